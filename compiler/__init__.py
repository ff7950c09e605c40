"""compiler: artifact + hardware spec -> Program (instructions and memory images), and its executor.

Data flow: model/ -> artifact -> golden/ -> compiler/ -> hw/ -> sim/. Imports NumPy, golden,
hw.params and hw.spec only (never Amaranth, torch or sim). docs/compiler.md is the reference.

    from bitaccel.compiler import Target, compile_program, execute
    prog = compile_program(artifact, Target(), ids=[101, 7592, 102])
    execute(prog)["layers.0.scores"]     # == IntegerModel(artifact).forward(...)["intermediates"][...]
"""
from .execute import ExecError, Machine, execute, read_external
from .lower import compile_program
from .program import Program, ProgramError, load_program, save_program
from .target import CompileError, Target

__all__ = ["CompileError", "ExecError", "Machine", "Program", "ProgramError", "Target", "compile_program",
           "execute", "load_program", "read_external", "save_program"]
