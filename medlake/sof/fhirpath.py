"""A parser for the FHIRPath subset that SQL on FHIR v2 views use.

Produces a small tuple-based AST that `medlake.sof.paths` turns into DuckDB SQL:

    ("this",)                          $this (also an invocation with no base)
    ("index_var",)                     $index
    ("lit", kind, value)               kind: string, integer, decimal, boolean, date, empty
    ("const", name)                    %name
    ("member", base, name)             base.name
    ("call", base, name, [args])       base.name(args); base is ("this",) when bare
    ("index", base, expr)              base[expr]
    ("op", op, left, right)            binary operators
    ("neg", expr)                      unary minus
"""
from __future__ import annotations

import re

from medlake.sof.errors import ViewDefinitionError

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<date>@T?[0-9][0-9:T.+\-Z]*)
  | (?P<number>[0-9]+(?:\.[0-9]+)?)
  | (?P<const>%(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]*`|'[^']*'))
  | (?P<var>\$(?:this|index|total))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)
  | (?P<op><=|>=|!=|!~|[-+*/&|=~<>.,()\[\]{}])
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "'": "'", '"': '"', "`": "`",
            "\\": "\\", "/": "/"}

# Binding power of infix operators, loosest first (FHIRPath §"Operator precedence").
_INFIX = {
    "implies": 1, "or": 2, "xor": 2, "and": 3, "in": 4, "contains": 4,
    "=": 5, "~": 5, "!=": 5, "!~": 5, "<": 6, ">": 6, "<=": 6, ">=": 6,
    "|": 7, "is": 8, "as": 8, "+": 9, "-": 9, "&": 9, "*": 10, "/": 10, "div": 10, "mod": 10,
}
_WORD_OPS = {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)",
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "u"
                  else _ESCAPES.get(m.group(1), m.group(1)), body)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ViewDefinitionError(
                f"FHIRPath {text!r}: unexpected character {text[pos]!r} at {pos}")
        pos = m.end()
        kind = m.lastgroup
        if kind != "ws":
            tokens.append((kind, m.group()))
    tokens.append(("end", ""))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def next(self) -> tuple[str, str]:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def fail(self, what: str):
        kind, value = self.peek()
        found = value or "end of expression"
        raise ViewDefinitionError(f"FHIRPath {self.text!r}: {what}, found {found!r}")

    def expect(self, value: str):
        if self.peek()[1] != value:
            self.fail(f"expected {value!r}")
        self.next()

    def parse(self):
        node = self.expression(0)
        if self.peek()[0] != "end":
            self.fail("expected end of expression")
        return node

    def infix_op(self) -> str | None:
        kind, value = self.peek()
        if kind == "op" and value in _INFIX:
            return value
        if kind == "ident" and value in _WORD_OPS:
            return value
        return None

    def expression(self, min_power: int):
        left = self.unary()
        while True:
            op = self.infix_op()
            if op is None or _INFIX[op] <= min_power:
                return left
            self.next()
            if op in ("is", "as"):
                kind, name = self.next()
                if kind != "ident":
                    self.fail(f"expected a type name after {op!r}")
                # A qualified type name: System.String, FHIR.Quantity.
                while self.peek()[1] == ".":
                    self.next()
                    name = self.next()[1]
                left = ("call", left, "ofType" if op == "as" else "is", [("type", name)])
                continue
            right = self.expression(_INFIX[op])
            left = ("op", op, left, right)

    def unary(self):
        kind, value = self.peek()
        if kind == "op" and value in "+-":
            self.next()
            operand = self.unary()
            return ("neg", operand) if value == "-" else operand
        return self.postfix(self.term())

    def postfix(self, node):
        while True:
            kind, value = self.peek()
            if value == ".":
                self.next()
                node = self.invocation(node)
            elif value == "[":
                self.next()
                index = self.expression(0)
                self.expect("]")
                node = ("index", node, index)
            else:
                return node

    def invocation(self, base):
        kind, value = self.next()
        if kind == "var" and value == "$this":
            return base
        if kind != "ident":
            self.pos -= 1
            self.fail("expected a name")
        name = value[1:-1] if value.startswith("`") else value
        if self.peek()[1] == "(":
            self.next()
            args = []
            if self.peek()[1] != ")":
                args.append(self.expression(0))
                while self.peek()[1] == ",":
                    self.next()
                    args.append(self.expression(0))
            self.expect(")")
            return ("call", base, name, args)
        return ("member", base, name)

    def term(self):
        kind, value = self.next()
        if kind == "string":
            return ("lit", "string", _unquote(value))
        if kind == "number":
            if "." in value:
                return ("lit", "decimal", value)
            return ("lit", "integer", int(value))
        if kind == "date":
            return ("lit", "date", value[1:])
        if kind == "const":
            name = value[1:]
            if name[0] in "`'":
                name = name[1:-1]
            return ("const", name)
        if kind == "var":
            return ("index_var",) if value == "$index" else ("this",)
        if kind == "ident":
            if value in ("true", "false"):
                return ("lit", "boolean", value == "true")
            self.pos -= 1
            return self.invocation(("this",))
        if value == "(":
            node = self.expression(0)
            self.expect(")")
            return node
        if value == "{":
            self.expect("}")
            return ("lit", "empty", None)
        self.pos -= 1
        self.fail("expected a value, name or '('")


def parse(text) -> tuple:
    """Parse a FHIRPath expression; raises ViewDefinitionError when it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise ViewDefinitionError(f"a FHIRPath expression must be a non-empty string, "
                                  f"got {text!r}")
    return _Parser(text).parse()
