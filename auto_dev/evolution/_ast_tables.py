"""Lookup tables for the AST repair operators: which operator or builtin may have been meant.

Alternatives are ordered by how often each is the intended fix, so rank 0 is tried first.
"""

from __future__ import annotations

import ast

CMP_ALTERNATIVES: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE, ast.Gt, ast.GtE, ast.NotEq, ast.Eq),
    ast.LtE: (ast.Lt, ast.GtE, ast.Gt, ast.Eq, ast.NotEq),
    ast.Gt: (ast.GtE, ast.Lt, ast.LtE, ast.NotEq, ast.Eq),
    ast.GtE: (ast.Gt, ast.LtE, ast.Lt, ast.Eq, ast.NotEq),
    ast.Eq: (ast.NotEq, ast.LtE, ast.GtE, ast.Lt, ast.Gt),
    ast.NotEq: (ast.Eq, ast.Lt, ast.Gt, ast.LtE, ast.GtE),
    ast.Is: (ast.IsNot, ast.Eq),
    ast.IsNot: (ast.Is, ast.NotEq),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
ARITH_ALTERNATIVES: dict[type[ast.operator], tuple[type[ast.operator], ...]] = {
    ast.Add: (ast.Sub, ast.Mult),
    ast.Sub: (ast.Add, ast.FloorDiv),
    ast.Mult: (ast.Add, ast.Pow, ast.FloorDiv, ast.Div, ast.Sub),
    ast.Div: (ast.FloorDiv, ast.Mult, ast.Mod),
    ast.FloorDiv: (ast.Div, ast.Mod, ast.Mult),
    ast.Mod: (ast.FloorDiv, ast.Div),
    ast.Pow: (ast.Mult,),
    ast.BitAnd: (ast.BitOr, ast.BitXor),
    ast.BitOr: (ast.BitAnd, ast.BitXor),
    ast.BitXor: (ast.BitOr, ast.BitAnd),
    ast.LShift: (ast.RShift,),
    ast.RShift: (ast.LShift,),
}
NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift)
BUILTIN_SWAPS: dict[str, tuple[str, ...]] = {
    "min": ("max",),
    "max": ("min",),
    "any": ("all",),
    "all": ("any",),
    "sum": ("len", "max"),
    "len": ("sum",),
    "sorted": ("reversed", "list"),
    "reversed": ("sorted",),
    "list": ("sorted", "set"),
    "set": ("list", "sorted"),
    "tuple": ("list",),
    "int": ("round", "float"),
    "round": ("int",),
    "float": ("int",),
    "str": ("repr",),
    "filter": ("map",),
    "map": ("filter",),
}
METHOD_SWAPS: dict[str, tuple[str, ...]] = {
    "append": ("extend",),
    "extend": ("append",),
    "lower": ("upper", "casefold"),
    "upper": ("lower",),
    "startswith": ("endswith",),
    "endswith": ("startswith",),
    "strip": ("lstrip", "rstrip"),
    "lstrip": ("rstrip", "strip"),
    "rstrip": ("lstrip", "strip"),
    "find": ("rfind", "index"),
    "rfind": ("find",),
    "index": ("rindex", "find"),
    "rindex": ("index",),
    "keys": ("values", "items"),
    "values": ("keys", "items"),
    "items": ("keys", "values"),
    "split": ("rsplit",),
    "rsplit": ("split",),
    "remove": ("discard",),
    "isdigit": ("isalpha", "isalnum"),
    "isalpha": ("isdigit", "isalnum"),
    "isalnum": ("isalpha", "isdigit"),
    "isupper": ("islower",),
    "islower": ("isupper",),
    "ljust": ("rjust",),
    "rjust": ("ljust",),
    "floor": ("ceil",),
    "ceil": ("floor",),
    "pop": ("popleft",),
    "popleft": ("pop",),
    "add": ("discard",),
}
UNWRAPPABLE = {"abs", "int", "float", "str", "list", "sorted", "reversed", "set", "tuple", "round"}
RETURN_WRAPS = ("abs", "sorted", "list", "int", "len", "str")
GUARD_DEFAULTS = ("None", "0", "[]", '""', "False", "{p}", "{}", "True", "-1", "0.0")
GUARDED_ERRORS = "(ZeroDivisionError, IndexError, KeyError, ValueError, TypeError)"

SYMBOLS = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+",
    ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
    ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
    ast.And: "and", ast.Or: "or", ast.Not: "not", ast.USub: "unary -", ast.Invert: "~",
}


def symbol(op: ast.AST) -> str:
    return SYMBOLS.get(type(op), type(op).__name__)
