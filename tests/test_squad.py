"""SQuAD v1.1: official EM / F1, n-best span decoding, the JSON reader and sliding-window
features. Fixture files are written here and the tokenizer is built from a small vocab
(nothing is downloaded)."""
import json
import re

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertTokenizer

from bitaccel.model.span_head import BitBertForSpans, SpanOutput, masked_soft_cross_entropy, span_distillation_loss
from bitaccel.model.squad_data import SquadExample, prepare_features, read_squad
from bitaccel.model.squad_metrics import (decode_best_spans, exact_match_score, f1_score, feature_nbest,
                                 normalize_answer, squad_scores)

# ---------------------------------------------------------------------------------------
# EM / F1
# ---------------------------------------------------------------------------------------


def test_normalize_answer_rules():
    assert normalize_answer("  The  Cat's,\that!\n") == "cats hat"       # case, punctuation, article, blanks
    assert normalize_answer("an apple A day") == "apple day"
    assert normalize_answer("Theater anthem") == "theater anthem"        # articles only as whole words
    assert normalize_answer("U.S.-based") == "usbased"
    assert normalize_answer("the") == "" and normalize_answer("") == ""


def test_exact_match_and_f1_by_hand():
    assert exact_match_score("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert exact_match_score("Eiffel", "Eiffel Tower") == 0.0
    # pred -> [big, red, dog, barked] (4), gold -> [red, dog] (2): overlap 2,
    # P = 2/4, R = 2/2, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert f1_score("the big red dog barked", "a red dog") == pytest.approx(2 / 3)
    # multiset overlap: pred [dog, dog], gold [dog, dog, cat]: overlap 2, P = 1, R = 2/3,
    # F1 = 2 * (2/3) / (5/3) = 0.8 (a set overlap would give 1 and F1 0.4)
    assert f1_score("dog dog", "dog dog cat") == pytest.approx(0.8)
    assert f1_score("cat", "dog") == 0.0
    # empty prediction: nothing overlaps; v1.1 scores F1 0 even when the truth normalizes to ""
    assert exact_match_score("", "dog") == 0.0 and f1_score("", "dog") == 0.0
    assert exact_match_score("", "The.") == 1.0 and f1_score("", "The.") == 0.0


def test_squad_scores_max_over_truths_and_percentages(caplog):
    refs = {"q1": ["the big red dog", "red dog!", "cat"],      # EM 1 via "red dog!", F1 1
            "q2": ["big red dog", "a dog"]}                    # pred "big dog"
    # q2: vs "big red dog": overlap 2, P 1, R 2/3 -> F1 0.8; vs "a dog" -> [dog]: P 1/2, R 1 -> 2/3.
    # max F1 0.8, EM 0.  Mean over 2: EM 50 %, F1 (1 + 0.8) / 2 = 90 %.
    preds = {"q1": "Red dog", "q2": "big dog"}
    assert squad_scores(preds, refs) == pytest.approx({"exact_match": 50.0, "f1": 90.0})
    # a missing prediction scores 0 and counts in the mean: EM 1/3, F1 1.8/3; extra ids are ignored
    refs["q3"] = ["anything"]
    preds["zz"] = "anything"
    assert squad_scores(preds, refs) == pytest.approx({"exact_match": 100 / 3, "f1": 60.0})
    assert "1 of 3 questions have no prediction" in caplog.text
    with pytest.raises(ValueError, match="non-empty list of answer texts"):
        squad_scores({"q": "x"}, {"q": "x"})


def test_squad_metrics_is_pure_python_and_numpy():
    import ast
    import bitaccel.model.squad_metrics as sm
    tree = ast.parse(open(sm.__file__).read())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert roots <= {"__future__", "logging", "re", "string", "collections", "dataclasses", "typing", "numpy"}, roots


# ---------------------------------------------------------------------------------------
# n-best span decoding
# ---------------------------------------------------------------------------------------

# Feature layout for the decoding tests: [CLS] q q [SEP] c c c c c c [SEP] [PAD]
# context "w0 w1 w2 w3 w4 w5": token 4 + k covers characters [3k, 3k + 2).
DEC_CONTEXT = "w0 w1 w2 w3 w4 w5"
DEC_OFFSETS = [None, None, None, None] + [(3 * k, 3 * k + 2) for k in range(6)] + [None, None]


def logits(*peaks, n=12):
    x = np.zeros(n)
    for index, value in peaks:
        x[index] = value
    return x


def test_nbest_picks_the_best_valid_span():
    spans = feature_nbest(logits((5, 3.0), (7, 1.0)), logits((6, 4.0), (8, 2.0)), DEC_OFFSETS,
                          n_best=3, max_answer_length=30)
    best = spans[0]
    assert (best.start, best.end, best.score) == (5, 6, 7.0)
    assert DEC_CONTEXT[best.char_start:best.char_end] == "w1 w2"
    assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True)
    assert decode_best_spans(logits((5, 3.0))[None], logits((6, 4.0))[None], [0], [DEC_OFFSETS],
                             [DEC_CONTEXT]) == ["w1 w2"]


def test_nbest_refuses_end_before_start_long_spans_and_question_tokens():
    # the top start (7) lies after the top end (5): with n_best 1 nothing is left
    start, end = logits((7, 5.0), (4, 1.0)), logits((5, 5.0), (8, 1.0))
    assert feature_nbest(start, end, DEC_OFFSETS, n_best=1) == []
    assert decode_best_spans(start[None], end[None], [0], [DEC_OFFSETS], [DEC_CONTEXT], n_best=1) == [""]
    # with n_best 2: (7, 8) scores 6, (4, 5) 6 too, (4, 8) 2; the tie keeps start rank order, 2 are kept
    assert [(s.start, s.end) for s in feature_nbest(start, end, DEC_OFFSETS, n_best=2)] == [(7, 8), (4, 5)]
    # too long: tokens 4..9 are 6 tokens
    start, end = logits((4, 5.0), (8, 1.0)), logits((9, 5.0))
    assert decode_best_spans(start[None], end[None], [0], [DEC_OFFSETS], [DEC_CONTEXT],
                             max_answer_length=5) == ["w4 w5"]
    assert decode_best_spans(start[None], end[None], [0], [DEC_OFFSETS], [DEC_CONTEXT],
                             max_answer_length=6) == ["w0 w1 w2 w3 w4 w5"]
    # question, [CLS], [SEP] and padding tokens are never chosen, however large their logits
    start, end = logits((0, 9.0), (1, 8.0), (6, 1.0)), logits((2, 9.0), (11, 8.0), (7, 1.0))
    assert decode_best_spans(start[None], end[None], [0], [DEC_OFFSETS], [DEC_CONTEXT]) == ["w2 w3"]
    assert decode_best_spans(start[None], end[None], [0], [DEC_OFFSETS], [DEC_CONTEXT], n_best=2) == [""]


def test_decode_takes_the_best_feature_of_each_example():
    # example 0 has features 0 and 1 (second scores higher); example 1 has feature 2 with no valid span
    start = np.stack([logits((4, 2.0)), logits((8, 3.0)), logits((0, 9.0))])
    end = np.stack([logits((4, 2.0)), logits((9, 3.0)), logits((0, 9.0))])
    out = decode_best_spans(start, end, [0, 0, 1], [DEC_OFFSETS] * 3, [DEC_CONTEXT, "other"], n_best=1)
    assert out == ["w4 w5", ""]
    start[0, 4] = 5.0                                         # now feature 0 wins: 5 + 2 > 3 + 3
    assert decode_best_spans(start, end, [0, 0, 1], [DEC_OFFSETS] * 3, [DEC_CONTEXT, "x"])[0] == "w0"
    start[0, 4] = 4.0                                         # a tie (4 + 2 = 3 + 3) goes to the earlier feature
    assert decode_best_spans(start, end, [0, 0, 1], [DEC_OFFSETS] * 3, [DEC_CONTEXT, "x"])[0] == "w0"
    with pytest.raises(ValueError, match=r"shape \(2, seq_len\)"):
        decode_best_spans(start, end, [0, 0], [DEC_OFFSETS] * 2, [DEC_CONTEXT])


# ---------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------

CONTEXT = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet "
           "kilo lima mike november oscar papa")                    # 16 words, one token each


def qa(qid, question, *answers):
    return {"id": qid, "question": question,
            "answers": [{"text": t, "answer_start": CONTEXT.index(t) if s is None else s} for t, s in answers]}


def squad_json(qas, context=CONTEXT):
    return {"version": "1.1", "data": [{"title": "Letters", "paragraphs": [{"context": context, "qas": qas}]}]}


def write(tmp_path, obj, name="train-v1.1.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_read_squad_train_and_dev(tmp_path):
    path = write(tmp_path, squad_json([qa("a1", "  which word ?", ("lima mike", None)),
                                       qa("a2", "which word ?", ("golf", None))]))
    got = read_squad(path, training=True)
    assert got.skipped_ids == [] and got.mismatched_ids == []
    first = got.examples[0]
    assert (first.id, first.title, first.question, first.context) == ("a1", "Letters", "which word ?", CONTEXT)
    assert first.answers == ("lima mike",) and first.answer_starts == (CONTEXT.index("lima mike"),)
    assert [e.id for e in got.examples] == ["a1", "a2"]

    dev = write(tmp_path, squad_json([qa("d1", "which word ?", ("echo", None), ("echo foxtrot", None),
                                         ("echo", None))]), "dev-v1.1.json")
    ex = read_squad(dev, training=False).examples[0]
    assert ex.answers == ("echo", "echo foxtrot", "echo") and ex.answer_starts == (CONTEXT.index("echo"),) * 3
    with pytest.raises(ValueError, match=r"dev-v1\.1\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\] \(id 'd1'\): "
                                         r"a training question needs exactly 1 answer, got 3"):
        read_squad(dev, training=True)


def test_read_squad_answer_text_mismatch(tmp_path, caplog):
    # "golf" is not at character 0: run_squad skips such a training question; evaluation keeps it
    path = write(tmp_path, squad_json([qa("ok", "which ?", ("echo", None)), qa("bad", "which ?", ("golf", 0))]))
    train = read_squad(path, training=True)
    assert [e.id for e in train.examples] == ["ok"] and train.skipped_ids == ["bad"]
    assert train.mismatched_ids == ["bad"] and "skipped 1 of 2 questions" in caplog.text
    dev = read_squad(path, training=False)
    assert [e.id for e in dev.examples] == ["ok", "bad"] and dev.skipped_ids == [] and dev.mismatched_ids == ["bad"]


def _malformed():
    good = squad_json([qa("q1", "which ?", ("echo", None))])

    def edit(fn):
        obj = json.loads(json.dumps(good))
        fn(obj)
        return obj

    para = lambda o: o["data"][0]["paragraphs"][0]              # noqa: E731
    q = lambda o: para(o)["qas"][0]                              # noqa: E731
    ans = lambda o: q(o)["answers"][0]                           # noqa: E731
    return [
        ('{"data": [', r"not valid JSON"),
        ([], r"top level: expected a JSON object, got list"),
        ({"version": "1.1"}, r"top level: missing 'data'"),
        (edit(lambda o: o["data"][0].pop("paragraphs")), r"data\[0\]: missing 'paragraphs'"),
        (edit(lambda o: para(o).update(context=5)), r"data\[0\]\.paragraphs\[0\]: 'context' must be str, got int"),
        (edit(lambda o: para(o).update(context=" ")), r"data\[0\]\.paragraphs\[0\]: empty context"),
        (edit(lambda o: para(o).update(qas={})), r"paragraphs\[0\]: 'qas' must be list, got dict"),
        (edit(lambda o: q(o).pop("id")), r"qas\[0\]: missing 'id'"),
        (edit(lambda o: q(o).update(question="   ")), r"qas\[0\] \(id 'q1'\): empty question"),
        (edit(lambda o: q(o).update(answers=[])), r"qas\[0\] \(id 'q1'\): no answers"),
        (edit(lambda o: q(o).update(is_impossible=True)), r"\(id 'q1'\): is_impossible is set"),
        (edit(lambda o: ans(o).update(answer_start="24")),
         r"qas\[0\] \(id 'q1'\)\.answers\[0\]: 'answer_start' must be int, got str"),
        (edit(lambda o: ans(o).update(answer_start=True)), r"'answer_start' must be int, got bool"),
        (edit(lambda o: ans(o).update(answer_start=-1)), r"answers\[0\]: negative answer_start -1"),
        (edit(lambda o: ans(o).update(text="")), r"answers\[0\]: empty answer text"),
        (edit(lambda o: para(o)["qas"].append(q(o))), r"qas\[1\] \(id 'q1'\): duplicate question id"),
    ]


@pytest.mark.parametrize("content, message", _malformed())
def test_read_squad_malformed_files(tmp_path, content, message):
    path = write(tmp_path, content, "broken.json")
    with pytest.raises(ValueError) as err:
        read_squad(path, training=False)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert re.search(message, text), text


def test_read_squad_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="SQuAD file not found"):
        read_squad(tmp_path / "nope.json", training=True)


# ---------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------

WORDS = CONTEXT.split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "which", "word", "?", "1990", "##s", "."] + WORDS


@pytest.fixture
def tokenizer(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tok = BertTokenizer.from_pretrained(str(tmp_path))
    assert tok.is_fast
    return tok


def example(answer, context=CONTEXT, question="which word ?", qid="q"):
    return SquadExample(qid, "t", question, context, (answer,), (context.index(answer),))


def span_text(feats, f, ex):
    s, e = int(feats.tensors["start_positions"][f]), int(feats.tensors["end_positions"][f])
    return ex.context[feats.offsets[f][s][0]:feats.offsets[f][e][1]]


def context_words(feats, f, ex):
    return [ex.context[o[0]:o[1]] for o in feats.offsets[f] if o is not None]


def test_single_window_layout_and_alignment(tokenizer):
    ex = example("1990s", context="echo golf in 1990s .", question="which word ?")
    feats = prepare_features([ex], tokenizer, max_len=16, doc_stride=2, max_query_len=8)
    ids = feats.tensors["input_ids"]
    assert ids.shape == (1, 16) and feats.example_index == [0]
    # [CLS] which word ? [SEP] echo golf [UNK] 1990 ##s . [SEP] [PAD] x4
    assert tokenizer.convert_ids_to_tokens(ids[0][:12].tolist()) == [
        "[CLS]", "which", "word", "?", "[SEP]", "echo", "golf", "[UNK]", "1990", "##s", ".", "[SEP]"]
    assert feats.tensors["token_type_ids"][0].tolist() == [0] * 5 + [1] * 7 + [0] * 4
    assert feats.tensors["attention_mask"][0].tolist() == [1] * 12 + [0] * 4
    assert feats.offsets[0][:5] == [None] * 5 and feats.offsets[0][11:] == [None] * 5
    assert feats.offsets[0][8:10] == [(13, 17), (17, 18)]
    assert (feats.tensors["start_positions"][0].item(), feats.tensors["end_positions"][0].item()) == (8, 9)
    assert span_text(feats, 0, ex) == "1990s"


def test_sliding_windows_counts_and_overlap(tokenizer):
    # max_len 16 - [CLS] [SEP] [SEP] - 3 question tokens = 10 context tokens a window; stride 4 shares
    # 4 tokens, so windows start at context tokens 0, 6, 12, ...: 16 tokens -> 2 windows
    # ([0, 10), [6, 16)); 16 + 4 = 20 tokens -> 3 ([0, 10), [6, 16), [12, 20)); 10 tokens -> 1.
    long_context = CONTEXT + " alpha bravo charlie delta"
    exs = [example("golf"), example("golf", context=long_context), example("golf", context=" ".join(WORDS[:10]))]
    feats = prepare_features(exs, tokenizer, max_len=16, doc_stride=4, max_query_len=8)
    assert feats.example_index == [0, 0, 1, 1, 1, 2]
    assert context_words(feats, 0, exs[0]) == WORDS[:10] and context_words(feats, 1, exs[0]) == WORDS[6:]
    windows = [context_words(feats, f, exs[1]) for f in (2, 3, 4)]
    assert windows[0][-4:] == windows[1][:4] and windows[1][-4:] == windows[2][:4]      # 4 shared tokens
    assert windows[2] == long_context.split()[12:]
    # a larger stride gives more windows: stride 6 -> starts 0, 4, 8 -> 3 windows for 16 tokens
    assert prepare_features(exs[:1], tokenizer, max_len=16, doc_stride=6, max_query_len=3).example_index == [0] * 3


def test_answers_in_the_second_window_and_cut_by_a_boundary(tokenizer):
    # windows: context tokens [0, 10) and [6, 16); a context token k sits at 5 + k - start in its window
    exs = [example("lima mike", qid="second"),          # tokens 11-12: second window only
           example("india juliet kilo", qid="cut"),     # tokens 8-10: cut by the first window's end
           example("golf hotel", qid="both")]           # tokens 6-7: in both windows
    feats = prepare_features(exs, tokenizer, max_len=16, doc_stride=4, max_query_len=8)
    assert feats.example_index == [0, 0, 1, 1, 2, 2]
    starts = feats.tensors["start_positions"].tolist()
    ends = feats.tensors["end_positions"].tolist()
    assert list(zip(starts, ends)) == [(0, 0), (10, 11), (0, 0), (7, 9), (11, 12), (5, 6)]
    assert span_text(feats, 1, exs[0]) == "lima mike"
    assert span_text(feats, 3, exs[1]) == "india juliet kilo"
    assert span_text(feats, 4, exs[2]) == span_text(feats, 5, exs[2]) == "golf hotel"

    # decoding with the gold positions as peaks recovers every answer, EM 100
    n = len(feats.example_index)
    start, end = np.zeros((n, 16)), np.zeros((n, 16))
    start[np.arange(n), starts] = 1.0
    end[np.arange(n), ends] = 1.0
    texts = decode_best_spans(start, end, feats.example_index, feats.offsets, [e.context for e in exs])
    assert texts == ["lima mike", "india juliet kilo", "golf hotel"]
    assert squad_scores(dict(zip([e.id for e in exs], texts)),
                        {e.id: list(e.answers) for e in exs}) == {"exact_match": 100.0, "f1": 100.0}


def test_question_truncated_to_max_query_len(tokenizer):
    question = "which word which word which word ?"                       # 7 tokens
    ex = example("papa", question=question)
    feats = prepare_features([ex], tokenizer, max_len=32, doc_stride=4, max_query_len=4)
    tokens = tokenizer.convert_ids_to_tokens(feats.tensors["input_ids"][0].tolist())
    assert tokens[:6] == ["[CLS]", "which", "word", "which", "word", "[SEP]"]
    assert len(feats.example_index) == 1 and span_text(feats, 0, ex) == "papa"
    feats = prepare_features([ex], tokenizer, max_len=32, doc_stride=4, max_query_len=7)
    assert tokenizer.convert_ids_to_tokens(feats.tensors["input_ids"][0].tolist())[7:9] == ["?", "[SEP]"]


def test_prepare_features_rejects_bad_options(tokenizer):
    with pytest.raises(ValueError, match="doc_stride 10 must be smaller"):
        prepare_features([example("golf")], tokenizer, max_len=16, doc_stride=10, max_query_len=3)
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        prepare_features([example("golf")], tokenizer, max_len=0, doc_stride=1, max_query_len=1)
    with pytest.raises(ValueError, match="at least one example"):
        prepare_features([], tokenizer, max_len=16, doc_stride=2, max_query_len=3)


# ---------------------------------------------------------------------------------------
# Span head (model/span_head.py) on a tiny random BERT
# ---------------------------------------------------------------------------------------

TINY_VOCAB, TINY_SEQ = 50, 12


def tiny_config(**kw):
    return BertConfig(vocab_size=TINY_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, **kw)


def tiny_batch(seed, b=4, s=TINY_SEQ):
    """Random ids (B, S), a mask whose rows 1.. are padded, question / context token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, TINY_VOCAB, (b, s), generator=g)
    lengths = torch.tensor([s] + [s - 2 - r for r in range(1, b)])
    mask = (torch.arange(s)[None] < lengths[:, None]).long()
    types = (torch.arange(s)[None] >= 4).long() * mask
    return ids, mask, types


@pytest.fixture(scope="module")
def hf_qa():
    torch.manual_seed(0)
    hf = BertForQuestionAnswering(tiny_config()).eval()
    with torch.no_grad():
        hf.qa_outputs.bias.copy_(torch.tensor([0.3, -0.2]))        # a bias that must be carried over
    return hf


def test_span_teacher_equals_hugging_face_qa(hf_qa):
    ours = BitBertForSpans.from_hf(hf_qa).eval()
    assert ours.flags()["ffn_act"] == "gelu" and all(q.bits == 32 for _, q in ours.named_sites())
    assert len(list(ours.named_sites())) == 2 * 10
    ids, mask, types = tiny_batch(1)
    starts, ends = torch.tensor([1, 5, 99, 7]), torch.tensor([2, 6, 3, 7])      # 99: outside, ignored
    with torch.no_grad():
        ref = hf_qa(input_ids=ids, attention_mask=mask, token_type_ids=types, start_positions=starts,
                    end_positions=ends)
        out = ours(ids, mask, types, start_positions=starts, end_positions=ends)
    assert out.start_logits.shape == out.end_logits.shape == (4, TINY_SEQ)
    assert torch.allclose(out.start_logits, ref.start_logits, atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.end_logits, ref.end_logits, atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.loss, ref.loss, atol=1e-6)
    # the loss by hand: the start term over rows 0, 1, 3 only, the end term over all four rows
    ce = torch.nn.functional.cross_entropy
    by_hand = (ce(out.start_logits[[0, 1, 3]], starts[[0, 1, 3]]) + ce(out.end_logits, ends)) / 2
    assert torch.allclose(out.loss, by_hand, atol=1e-6)


def test_span_from_pretrained_seeds_a_missing_head(tmp_path):
    torch.manual_seed(3)
    hf = BertForSequenceClassification(tiny_config(num_labels=3))
    hf.save_pretrained(tmp_path)                                   # an encoder checkpoint without a span head
    a = BitBertForSpans.from_pretrained(tmp_path, seed=5)
    b = BitBertForSpans.from_pretrained(tmp_path, seed=5)
    c = BitBertForSpans.from_pretrained(tmp_path, seed=6)
    assert torch.equal(a.layers[1].linears["ffn1"].weight, hf.bert.encoder.layer[1].intermediate.dense.weight)
    assert torch.equal(a.embeddings.word.weight, hf.bert.embeddings.word_embeddings.weight)
    assert a.head.qa_outputs.weight.shape == (2, 32)
    assert torch.equal(a.head.qa_outputs.weight, b.head.qa_outputs.weight)
    assert not torch.equal(a.head.qa_outputs.weight, c.head.qa_outputs.weight)


def test_span_student_trains_every_parameter_and_distills(hf_qa):
    teacher = BitBertForSpans.from_hf(hf_qa).eval()
    student = BitBertForSpans.from_teacher(teacher, weight_bits=1, act_bits=1).train()
    assert student.flags()["ffn_act"] == "relu" and student.site("layers.0.ffn1.in").bits == 1
    for name, value in teacher.state_dict().items():                              # every weight carried over
        assert torch.equal(student.state_dict()[name], value), name
    ids, mask, types = tiny_batch(2)
    with torch.no_grad():
        t_out = teacher(ids, mask, types, output_attentions=True)
    s_out = student(ids, mask, types, start_positions=torch.tensor([4, 5, 6, 7]),
                    end_positions=torch.tensor([5, 5, 8, 9]), output_attentions=True)
    assert len(s_out.hidden_states) == 3 and all(h.shape == (4, TINY_SEQ, 32) for h in s_out.hidden_states)
    assert all(a.shape == (4, 2, TINY_SEQ, TINY_SEQ) for a in s_out.attentions)
    terms = span_distillation_loss(s_out, t_out, mask, attention=True)
    assert all(terms[k] > 0 for k in ("logits", "reps", "att"))
    assert torch.isclose(terms["loss"], terms["logits"] + terms["reps"] + terms["att"])
    (terms["loss"] + s_out.loss).backward()
    assert [n for n, p in student.named_parameters() if p.grad is None] == []      # no unused parameters
    assert all(p.grad is None for p in teacher.parameters())
    with pytest.raises(ValueError, match="output_attentions=True"):
        span_distillation_loss(s_out, teacher(ids, mask, types), mask, attention=True)
    with torch.no_grad():
        student.site("layers.1.o.in").beta.add_(0.5)
    assert BitBertForSpans.from_teacher(student, 1, 1).site("layers.1.o.in").beta.abs().min() > 0
    assert BitBertForSpans.from_teacher(student, 1, 1, learn_beta=False).site("layers.1.o.in").beta.abs().sum() == 0


def test_span_soft_cross_entropy_by_hand():
    torch.manual_seed(0)
    s = torch.randn(2, 5, requires_grad=True)
    t = torch.randn(2, 5)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    row0 = -(torch.softmax(t[0, :3], -1) * torch.log_softmax(s[0, :3], -1)).sum()
    row1 = -(torch.softmax(t[1], -1) * torch.log_softmax(s[1], -1)).sum()
    loss = masked_soft_cross_entropy(s, t, valid)
    assert torch.allclose(loss, (row0 + row1) / 2)
    junk_t, junk_s = t.clone(), s.detach().clone()
    junk_t[0, 3:] += 50.0
    junk_s[0, 3:] -= 50.0
    assert torch.allclose(masked_soft_cross_entropy(junk_s, junk_t, valid), loss)    # padding is ignored
    loss.backward()
    assert torch.all(s.grad[0, 3:] == 0) and s.grad[0, :3].abs().sum() > 0
    # the gradient (softmax(s) - softmax(t)) / B vanishes when the student matches the teacher
    same = t.clone().requires_grad_(True)
    masked_soft_cross_entropy(same, t, valid).backward()
    assert same.grad.abs().max() < 1e-7
    with pytest.raises(ValueError, match="at least one valid position"):
        masked_soft_cross_entropy(s, t, torch.tensor([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]).bool())

    h = (torch.zeros(2, 5, 3),)
    e = torch.randn(2, 5)
    out = span_distillation_loss(SpanOutput(s, e, h), SpanOutput(t, e + 1.0, h), valid.long())
    expected = (masked_soft_cross_entropy(s, t, valid) + masked_soft_cross_entropy(e, e + 1.0, valid)) / 2
    assert torch.allclose(out["logits"], expected) and out["reps"] == 0 and out["att"] == 0
    with pytest.raises(ValueError, match="same number of layers"):
        span_distillation_loss(SpanOutput(s, e, h), SpanOutput(t, e, h + h), valid)
