"""Offline program-repair operators over the Python AST.

:func:`enumerate_edits` lists every single-edit neighbour of a program that the operator families
below can make (the classic one-edit bugs), as :class:`Edit` records: *where* (a path of fields
from the module root), *what* (replace, insert or delete a node) and *how plausible* (``rank``
within the family at that site, 0 = the most likely fix). :func:`render` turns one edit into
source code by patching the parsed tree in place, unparsing it and undoing the patch, so listing
and rendering hundreds of neighbours never copies the tree.

Families (the ``op`` of an edit; the proposal's operator is ``"ast." + op``):

``compare_swap``    ``<`` <-> ``<=`` / ``>`` / ``>=`` / ``==`` / ``!=``, ``is`` <-> ``is not``
``arith_swap``      ``+`` <-> ``-``, ``*`` <-> ``/`` / ``//`` / ``**``, ``%``, bit operators
``operand_swap``    ``a - b`` -> ``b - a`` for the non-commutative operators
``bool_swap``       ``and`` <-> ``or``
``unary``           drop ``not`` / unary minus; negate an ``if``/``while`` test
``constant``        ints +-1, 0 <-> 1, -1, ``True`` <-> ``False``, ``None`` <-> ``0`` / ``""``
``off_by_one``      +-1 on ``range()`` arguments, slice bounds and indices; add/drop a bound
``arg_swap``        swap two positional arguments of a call
``builtin_swap``    ``min`` <-> ``max``, ``any`` <-> ``all``, ``sum`` <-> ``len``, method twins
                    (``startswith`` <-> ``endswith``, ...), and unwrapping ``abs(x)`` -> ``x``
``guard``           ``if not p: return <default>`` / ``if p is None: ...`` / ``if p <= 0: ...``
``guard_try``       wrap a function body in ``try: ... except (common errors): return <default>``
``return_tweak``    ``return v`` -> ``v +- 1``, ``not v``, ``-v``, ``abs(v)``, ``sorted(v)``, ...
``assign_aug``      ``x = v`` <-> ``x += v`` (and ``-=``)
``stmt_delete``     delete one statement
``stmt_duplicate``  duplicate one simple statement
``loop_control``    ``break`` <-> ``continue``
``name_swap``       use another local variable in place of one
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from auto_dev.evolution import _ast_tables as T
from auto_dev.evolution._ast_guards import guard_edits
from auto_dev.evolution._crossover import crossover

__all__ = ["Edit", "apply_edit", "crossover", "enumerate_edits", "neighbours", "render"]

Path = tuple[tuple[str, int | None], ...]
EditKind = Literal["replace", "insert", "delete"]


@dataclass(frozen=True, slots=True)
class Edit:
    """One single-site change to a parsed program."""

    op: str
    path: Path
    kind: EditKind
    node: ast.AST | None
    line: int
    rank: int
    description: str


# --- applying and rendering ------------------------------------------------------------------


def _resolve(tree: ast.AST, path: Path) -> tuple[ast.AST, str, int | None]:
    node = tree
    for field, index in path[:-1]:
        value = getattr(node, field)
        node = value[index] if index is not None else value
    field, index = path[-1]
    return node, field, index


def apply_edit(tree: ast.Module, edit: Edit) -> None:
    """Apply ``edit`` to ``tree`` in place (use :func:`render` to get code without keeping it)."""
    _apply(tree, edit)


def _apply(tree: ast.Module, edit: Edit) -> tuple[ast.AST, str, int | None, object]:
    owner, field, index = _resolve(tree, edit.path)
    if edit.kind == "replace":
        if index is None:
            old = getattr(owner, field)
            setattr(owner, field, edit.node)
        else:
            old = getattr(owner, field)[index]
            getattr(owner, field)[index] = edit.node
    elif edit.kind == "insert":
        assert index is not None
        getattr(owner, field).insert(index, edit.node)
        old = None
    else:
        assert index is not None
        old = getattr(owner, field).pop(index)
    return owner, field, index, old


def _undo(edit: Edit, owner: ast.AST, field: str, index: int | None, old: object) -> None:
    if edit.kind == "replace":
        if index is None:
            setattr(owner, field, old)
        else:
            getattr(owner, field)[index] = old
    elif edit.kind == "insert":
        assert index is not None
        del getattr(owner, field)[index]
    else:
        assert index is not None
        getattr(owner, field).insert(index, old)


def render(tree: ast.Module, edit: Edit) -> str | None:
    """Source code of ``tree`` with ``edit`` applied; ``tree`` is unchanged afterwards.

    ``None`` when the edited tree cannot be unparsed (an edit that makes no valid program).
    """
    owner, field, index, old = _apply(tree, edit)
    try:
        return ast.unparse(tree) + "\n"
    except Exception:  # ast.unparse raises assorted errors on impossible trees
        return None
    finally:
        _undo(edit, owner, field, index, old)


# --- enumeration -----------------------------------------------------------------------------




class _Enumerator:
    """Collects edits in one walk over the tree."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.edits: list[Edit] = []
        self._local_cache: dict[int, list[str]] = {}
        self.docstrings: set[int] = set()
        self._literal_cache: list[Any] | None = None
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                first = node.body[0] if node.body else None
                if (
                    isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)
                ):
                    self.docstrings.add(id(first))
                    self.docstrings.add(id(first.value))

    def _locals(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
        names = self._local_cache.get(id(func))
        if names is None:
            names = self._local_cache[id(func)] = _local_names(func)
        return names

    def add(
        self, op: str, path: Path, kind: EditKind, node: ast.AST | None, line: int, rank: int,
        description: str,
    ) -> None:
        self.edits.append(Edit(op, path, kind, node, line, rank, description))

    def _literals(self) -> list[Any]:
        """Number and short string literals of the program, most frequent first (cached)."""
        if self._literal_cache is None:
            counts: dict[tuple[type, Any], int] = {}
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Constant) and id(node) not in self.docstrings:
                    v = node.value
                    if isinstance(v, int | float | str) and not (isinstance(v, str)
                                                                and len(v) > 12):
                        counts[(type(v), v)] = counts.get((type(v), v), 0) + 1
            ranked = sorted(counts.items(), key=lambda item: -item[1])
            self._literal_cache = [v for (_, v), _ in ranked[:8]]
        return self._literal_cache

    def run(self) -> list[Edit]:
        self._visit(self.tree, (), None, 0, in_fstring=False)
        return self.edits

    def _visit(
        self, node: ast.AST, path: Path, func: ast.FunctionDef | ast.AsyncFunctionDef | None,
        line: int, *, in_fstring: bool,
    ) -> None:
        line = getattr(node, "lineno", line)
        if id(node) in self.docstrings:
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node
            self._function(node, path, line)
        if not in_fstring:
            self._node(node, path, func, line)
        in_fstring = in_fstring or isinstance(node, ast.JoinedStr)
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns", "type_comment", "decorator_list"):
                continue  # mutating type hints and decorators never repairs behaviour
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    self._body(node, value, (*path, (field, None)), line)
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        self._visit(item, (*path, (field, i)), func, line, in_fstring=in_fstring)
            elif isinstance(value, ast.AST):
                self._visit(value, (*path, (field, None)), func, line, in_fstring=in_fstring)

    # Expression- and statement-level families.
    def _node(
        self, node: ast.AST, path: Path, func: ast.FunctionDef | ast.AsyncFunctionDef | None,
        line: int,
    ) -> None:
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for rank, cmp_alt in enumerate(T.CMP_ALTERNATIVES.get(type(op), ())):
                    self.add("compare_swap", (*path, ("ops", i)), "replace", cmp_alt(), line, rank,
                             f"line {line}: {T.symbol(op)} -> {T.symbol(cmp_alt())}")
        elif isinstance(node, ast.BinOp | ast.AugAssign):
            for rank, alt in enumerate(T.ARITH_ALTERNATIVES.get(type(node.op), ())):
                self.add("arith_swap", (*path, ("op", None)), "replace", alt(), line, rank,
                         f"line {line}: {T.symbol(node.op)} -> {T.symbol(alt())}")
            if (isinstance(node, ast.BinOp) and isinstance(node.op, T.NON_COMMUTATIVE)
                    and ast.dump(node.left) != ast.dump(node.right)):
                swapped = ast.BinOp(left=node.right, op=node.op, right=node.left)
                self.add("operand_swap", path, "replace", swapped, line, 0,
                         f"line {line}: swap operands of {T.symbol(node.op)}")
        elif isinstance(node, ast.BoolOp):
            alt_bool: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            self.add("bool_swap", (*path, ("op", None)), "replace", alt_bool, line, 0,
                     f"line {line}: {T.symbol(node.op)} -> {T.symbol(alt_bool)}")
            for i, value in enumerate(node.values):
                self._negate(value, (*path, ("values", i)), line, 1)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub | ast.Invert):
            self.add("unary", path, "replace", node.operand, line, 0,
                     f"line {line}: drop {T.symbol(node.op)}")
        elif isinstance(node, ast.Constant) and path:
            self._constant(node, path, line)
        elif isinstance(node, ast.Call):
            self._call(node, path, line)
        elif isinstance(node, ast.Subscript):
            self._subscript(node, path, line)
        elif isinstance(node, (ast.If | ast.While, ast.IfExp)):
            self._negate(node.test, (*path, ("test", None)), line, 0)
        elif isinstance(node, ast.Return) and node.value is not None:
            self._return(node, path, line)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name | ast.Subscript | ast.Attribute):
                for rank, aug_op in enumerate((ast.Add(), ast.Sub())):
                    aug = ast.AugAssign(target=target, op=aug_op, value=node.value)
                    self.add("assign_aug", path, "replace", aug, line, rank,
                             f"line {line}: = -> {T.symbol(aug_op)}=")
        elif isinstance(node, ast.Break | ast.Continue):
            alt_loop: ast.stmt = ast.Continue() if isinstance(node, ast.Break) else ast.Break()
            self.add("loop_control", path, "replace", alt_loop, line, 0,
                     f"line {line}: {type(node).__name__.lower()} -> "
                     f"{type(alt_loop).__name__.lower()}")
        if isinstance(node, ast.AugAssign):
            plain = ast.Assign(targets=[node.target], value=node.value, lineno=line)
            self.add("assign_aug", path, "replace", plain, line, 1,
                     f"line {line}: {T.symbol(node.op)}= -> =")
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and func is not None:
            local = self._locals(func)
            if node.id not in local:
                return
            for rank, other in enumerate(local):
                if other != node.id:
                    self.add("name_swap", path, "replace", ast.Name(id=other, ctx=ast.Load()),
                             line, rank, f"line {line}: {node.id} -> {other}")

    def _negate(self, test: ast.expr, path: Path, line: int, rank: int) -> None:
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return  # dropping the `not` is already listed
        self.add("unary", path, "replace", ast.UnaryOp(op=ast.Not(), operand=test), line, rank,
                 f"line {line}: negate condition")

    def _constant(self, node: ast.Constant, path: Path, line: int) -> None:
        value = node.value
        alts: list[Any] = []
        if isinstance(value, bool):
            alts = [not value]
        elif value is None:
            alts = [0, ""]
        elif isinstance(value, int):
            alts = [value + 1, value - 1, 0, 1, -1, -value]
            if path[-1][0] == "value":  # a returned or assigned number may have meant None
                alts.append(None)
            if abs(value) < 10_000:  # a near miss, or the wrong order of magnitude
                alts += [value + 2, value - 2, value * 10]
                if value % 10 == 0:
                    alts.append(value // 10)
        elif isinstance(value, float):
            alts = [value + 1.0, value - 1.0, 0.0, 1.0, -value]
        elif isinstance(value, str):
            alts = [" "] if value == "" else ([""] if value.isspace() or len(value) == 1 else [])
        # A constant copied from elsewhere in the program (`% 3` where `% 5` was meant).
        alts += [c for c in self._literals() if type(c) is type(value)]
        seen: list[Any] = []
        for alt in alts:
            if _same_constant(alt, value) or any(_same_constant(alt, s) for s in seen):
                continue
            seen.append(alt)
            self.add("constant", path, "replace", ast.Constant(value=alt), line, len(seen) - 1,
                     f"line {line}: {value!r} -> {alt!r}")

    def _call(self, node: ast.Call, path: Path, line: int) -> None:
        func = node.func
        plain_args = not any(isinstance(a, ast.Starred) for a in node.args)
        if isinstance(func, ast.Name):
            for rank, alt in enumerate(T.BUILTIN_SWAPS.get(func.id, ())):
                self.add("builtin_swap", (*path, ("func", None)), "replace",
                         ast.Name(id=alt, ctx=ast.Load()), line, rank,
                         f"line {line}: {func.id}() -> {alt}()")
            unwrap = func.id in T.UNWRAPPABLE and len(node.args) == 1 and not node.keywords
            if unwrap and plain_args:
                self.add("builtin_swap", path, "replace", node.args[0], line, 2,
                         f"line {line}: drop {func.id}()")
            if func.id == "range" and plain_args:
                for i, arg in enumerate(node.args):
                    self._plus_minus(arg, (*path, ("args", i)), line, "range argument")
                if len(node.args) == 1:
                    widened = ast.Call(func=func, args=[ast.Constant(1), node.args[0]], keywords=[])
                    self.add("off_by_one", path, "replace", widened, line, 2,
                             f"line {line}: range(n) -> range(1, n)")
        elif isinstance(func, ast.Attribute):
            for rank, alt in enumerate(T.METHOD_SWAPS.get(func.attr, ())):
                self.add("builtin_swap", (*path, ("func", None)), "replace",
                         ast.Attribute(value=func.value, attr=alt, ctx=ast.Load()), line, rank,
                         f"line {line}: .{func.attr}() -> .{alt}()")
        if isinstance(func, ast.Attribute) and len(node.args) == 1 and plain_args and (
            ast.dump(func.value) != ast.dump(node.args[0])
        ):
            # `word.join(sep)` for `sep.join(word)`: receiver and argument swapped.
            flipped = ast.Call(func=ast.Attribute(value=node.args[0], attr=func.attr,
                                                  ctx=ast.Load()),
                               args=[func.value], keywords=node.keywords)
            self.add("arg_swap", path, "replace", flipped, line, 0,
                     f"line {line}: swap receiver and argument of .{func.attr}()")
        if plain_args and len(node.args) >= 2:
            n = min(len(node.args), 5)
            rank = 0
            for i in range(n):
                for j in range(i + 1, n):
                    args = list(node.args)
                    if ast.dump(args[i]) == ast.dump(args[j]):
                        continue
                    args[i], args[j] = args[j], args[i]
                    swapped = ast.Call(func=func, args=args, keywords=node.keywords)
                    self.add("arg_swap", path, "replace", swapped, line, rank,
                             f"line {line}: swap arguments {i + 1} and {j + 1}")
                    rank += 1

    def _subscript(self, node: ast.Subscript, path: Path, line: int) -> None:
        index = node.slice
        spath = (*path, ("slice", None))
        if isinstance(index, ast.Slice):
            for bound, default in (("lower", 1), ("upper", -1)):
                value = getattr(index, bound)
                if value is None:
                    grown = ast.Slice(lower=index.lower, upper=index.upper, step=index.step)
                    setattr(grown, bound, ast.Constant(default))
                    self.add("off_by_one", spath, "replace", grown, line, 2,
                             f"line {line}: add slice {bound} bound {default}")
                else:
                    self._plus_minus(value, (*spath, (bound, None)), line, f"slice {bound}")
                    shrunk = ast.Slice(lower=index.lower, upper=index.upper, step=index.step)
                    setattr(shrunk, bound, None)
                    self.add("off_by_one", spath, "replace", shrunk, line, 3,
                             f"line {line}: drop slice {bound} bound")
        elif not isinstance(index, ast.Tuple) and not (
            isinstance(index, ast.Constant) and isinstance(index.value, str)
        ):
            self._plus_minus(index, spath, line, "index")

    def _plus_minus(self, expr: ast.expr, path: Path, line: int, what: str) -> None:
        for rank, delta in enumerate((1, -1)):
            self.add("off_by_one", path, "replace", _shift(expr, delta), line, rank,
                     f"line {line}: {what} {'+' if delta > 0 else '-'}1")

    def _return(self, node: ast.Return, path: Path, line: int) -> None:
        value = node.value
        assert value is not None
        vpath = (*path, ("value", None))
        variants: list[tuple[ast.expr, str]] = []
        boolish = isinstance(value, ast.Compare | ast.BoolOp) or (
            isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not)
        )
        if boolish:
            variants.append((ast.UnaryOp(op=ast.Not(), operand=value), "not v"))
        elif not isinstance(value, ast.Constant):
            variants.append((_shift(value, 1), "v + 1"))
            variants.append((_shift(value, -1), "v - 1"))
            variants.append((ast.UnaryOp(op=ast.USub(), operand=value), "-v"))
            variants.append((ast.UnaryOp(op=ast.Not(), operand=value), "not v"))
            for name in T.RETURN_WRAPS:
                wrapped = ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=[value],
                                   keywords=[])
                variants.append((wrapped, f"{name}(v)"))
        if not (isinstance(value, ast.Constant) and value.value is None):
            variants.append((ast.Constant(value=None), "None"))
        for rank, (new, label) in enumerate(variants):
            self.add("return_tweak", vpath, "replace", new, line, rank,
                     f"line {line}: return {label}")

    # Statement-list families.
    def _body(self, owner: ast.AST, body: list[ast.stmt], path: Path, line: int) -> None:
        field = path[-1][0]
        base = path[:-1]
        start = 1 if body and id(body[0]) in self.docstrings else 0
        real = len(body) - start
        for i in range(start, len(body)):
            stmt = body[i]
            sline = getattr(stmt, "lineno", line)
            if real > 1 and not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef
                                           | ast.ClassDef | ast.Import | ast.ImportFrom):
                self.add("stmt_delete", (*base, (field, i)), "delete", None, sline, 0,
                         f"line {sline}: delete statement")
            if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign) or (
                isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            ):
                self.add("stmt_duplicate", (*base, (field, i + 1)), "insert",
                         copy.deepcopy(stmt), sline, 0, f"line {sline}: duplicate statement")

    def _function(
        self, func: ast.FunctionDef | ast.AsyncFunctionDef, path: Path, line: int
    ) -> None:
        has_doc = bool(func.body) and id(func.body[0]) in self.docstrings
        for op, where, kind, node, rank, description in guard_edits(func, path, line, has_doc):
            self.add(op, where, kind, node, line, rank, description)


def _local_names(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Parameters and assigned names of ``func``, in order of first appearance."""
    names: list[str] = [a.arg for a in (*func.args.posonlyargs, *func.args.args,
                                        *func.args.kwonlyargs)]
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in names:
            names.append(node.id)
    return names


def _shift(expr: ast.expr, delta: int) -> ast.expr:
    """``expr + delta`` folded where it reads naturally (``n - 1`` + 1 -> ``n``)."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, int) and not isinstance(
        expr.value, bool
    ):
        return ast.Constant(value=expr.value + delta)
    if (
        isinstance(expr, ast.BinOp)
        and isinstance(expr.op, ast.Add | ast.Sub)
        and isinstance(expr.right, ast.Constant)
        and isinstance(expr.right.value, int)
        and not isinstance(expr.right.value, bool)
    ):
        k = expr.right.value if isinstance(expr.op, ast.Add) else -expr.right.value
        k += delta
        if k == 0:
            return expr.left
        op: ast.operator = ast.Add() if k > 0 else ast.Sub()
        return ast.BinOp(left=expr.left, op=op, right=ast.Constant(value=abs(k)))
    op2: ast.operator = ast.Add() if delta > 0 else ast.Sub()
    return ast.BinOp(left=expr, op=op2, right=ast.Constant(value=abs(delta)))


def _same_constant(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b



def enumerate_edits(tree: ast.Module) -> list[Edit]:
    """Every single-edit neighbour of ``tree`` the families can make (tree left unchanged)."""
    return _Enumerator(tree).run()


def neighbours(code: str) -> Iterator[tuple[Edit, str]]:
    """Yield ``(edit, new_code)`` for every renderable single-edit neighbour of ``code``."""
    tree = ast.parse(code)
    same = ast.unparse(tree) + "\n"
    for edit in enumerate_edits(tree):
        new = render(tree, edit)
        if new is not None and new != same:
            yield edit, new
