"""Scriptorium's LLM helper: pseudonymisation and the offline provider's templates.

Reads one JSON request on stdin, writes one JSON answer on stdout. It parses and
rewrites code as data; it never executes it.

- {"op": "pseudonymise", "code", "instruction", "names"}: sensitive identifiers (the
  configured `names`) and string literals that look like hosts, URLs, paths, keys or
  e-mail addresses are replaced by placeholders, consistently. The Python AST decides
  what is an identifier or a string; the tokenizer gives exact positions, so comments
  and formatting survive. Code that does not parse falls back to a text mode.
- {"op": "offline", "code", "instruction"}: deterministic templates keyed on the
  instruction (argv input, CSV, JSON, logging, docstring, wrap in main).
"""

import ast
import io
import json
import re
import sys
import tokenize

HOST = re.compile(r"^(?:[a-z0-9-]+\.)+[a-z]{2,}(?::\d+)?$|^\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?$", re.I)
URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.I)
PATH = re.compile(r"^(?:/|~/|[A-Za-z]:\\)\S*$")
KEY = re.compile(r"^(?:sk-|pk_|rk_|AKIA|ghp_|xox[bp]-)[A-Za-z0-9_\-]{8,}$|^[A-Fa-f0-9]{32,}$|^[A-Za-z0-9+/_\-]{40,}={0,2}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)
# The same shapes inside free text (comments, f-strings, the instruction).
IN_TEXT = re.compile(
    r"[a-z][a-z0-9+.-]*://[^\s'\"{}]+"
    r"|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"
    r"|\b(?:sk-|pk_|rk_|AKIA|ghp_|xox[bp]-)[A-Za-z0-9_\-]{8,}"
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"
    r"|\b(?:[a-z0-9-]+\.)+(?:com|org|net|io|de|internal|local|corp|lan|dev)\b",
    re.I,
)


def sensitive_string(s):
    s = s.strip()
    return bool(s) and bool(URL.match(s) or HOST.match(s) or PATH.match(s) or KEY.match(s) or EMAIL.match(s))


class Mapper:
    def __init__(self):
        self.entries = []  # {placeholder, original, token}
        self.by_original = {}

    def ident(self, name):
        if name not in self.by_original:
            p = f"anon_id_{len(self.entries) + 1}"
            self.entries.append({"placeholder": p, "original": name, "token": name})
            self.by_original[name] = p
        return self.by_original[name]

    def string(self, value, token):
        if value not in self.by_original:
            p = f"anon_str_{len(self.entries) + 1}"
            self.entries.append({"placeholder": p, "original": value, "token": token})
            self.by_original[value] = p
        return self.by_original[value]

    def text(self, s, names):
        """Replaces known originals, configured names and sensitive shapes in free text."""
        for e in sorted(self.entries, key=lambda e: -len(e["original"])):
            s = s.replace(e["original"], e["placeholder"])
        if names:
            pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\b")
            s = pattern.sub(lambda m: self.ident(m.group(1)), s)
        return IN_TEXT.sub(lambda m: self.string(m.group(0), json.dumps(m.group(0))), s)


def pseudonymise(code, instruction, names):
    names = [n for n in names if n]
    m = Mapper()
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        out = m.text(code, names)
        return {
            "mode": "text",
            "note": f"the code does not parse (line {e.lineno}: {e.msg}), so names were replaced as text",
            "code": out,
            "instruction": m.text(instruction, names),
            "mapping": m.entries,
        }
    identifiers = set()
    strings = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            identifiers.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            identifiers.add(node.name)
        elif isinstance(node, ast.arg):
            identifiers.add(node.arg)
        elif isinstance(node, ast.Attribute):
            identifiers.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            identifiers.add(node.arg)
        elif isinstance(node, ast.alias):
            identifiers.update((node.asname or node.name).split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in names or sensitive_string(node.value):
                strings[node.value] = True
    targets = identifiers & set(names)
    lines = code.splitlines(keepends=True)
    edits = []  # (row, col, end_row, end_col, text)
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        (sr, sc), (er, ec) = tok.start, tok.end
        if tok.type == tokenize.NAME and tok.string in targets:
            edits.append((sr, sc, er, ec, m.ident(tok.string)))
        elif tok.type == tokenize.STRING:
            try:
                value = ast.literal_eval(tok.string)
            except Exception:
                value = None
            if isinstance(value, str) and value in strings:
                edits.append((sr, sc, er, ec, json.dumps(m.string(value, tok.string))))
            elif value is None:
                # An f-string: names and sensitive shapes inside it, as text.
                new = m.text(tok.string, names)
                if new != tok.string:
                    edits.append((sr, sc, er, ec, new))
        elif tok.type == tokenize.COMMENT:
            new = m.text(tok.string, names)
            if new != tok.string:
                edits.append((sr, sc, er, ec, new))
    for sr, sc, er, ec, text in sorted(edits, reverse=True):
        first, last = lines[sr - 1], lines[er - 1]
        lines[sr - 1 : er] = [first[:sc] + text + last[ec:]]
    out = "".join(lines)
    return {"mode": "ast", "note": None, "code": out, "instruction": m.text(instruction, names), "mapping": m.entries}


# ---------------------------------------------------------------- offline provider

def has_docstring(tree):
    return ast.get_docstring(tree) is not None


def insert_after_header(code, block):
    """Inserts `block` after the module docstring and imports."""
    tree = ast.parse(code)
    at = 0
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant) and isinstance(node.value.value, str)
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (is_doc and node is tree.body[0]):
            at = node.end_lineno
        else:
            break
    lines = code.splitlines(keepends=True)
    return "".join(lines[:at]) + block + "".join(lines[at:])


def ensure_import(code, module):
    tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, ast.Import) and any(a.name == module for a in node.names):
            return code
    return insert_after_header(code, f"import {module}\n")


def has_main_guard(tree):
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
            return True
    return False


def wrap_in_main(code):
    tree = ast.parse(code)
    if has_main_guard(tree):
        return code, False
    keep_types = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    lines = code.splitlines(keepends=True)
    moved, kept_ranges = [], []
    for i, node in enumerate(tree.body):
        is_doc = i == 0 and isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
        is_const = isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
        if isinstance(node, keep_types) or is_doc or is_const:
            continue
        moved.append((node.lineno, node.end_lineno))
    if not moved:
        body = "    pass\n"
    else:
        body = "".join("    " + lines[j] if lines[j].strip() else lines[j] for a, b in moved for j in range(a - 1, b))
    drop = {j for a, b in moved for j in range(a - 1, b)}
    rest = "".join(line for j, line in enumerate(lines) if j not in drop).rstrip() + "\n"
    out = rest + "\n\ndef main() -> int:\n" + body + "    return 0\n\n\nif __name__ == \"__main__\":\n    raise SystemExit(main())\n"
    return out, True


CAPABILITIES = (
    "The offline provider understands: add argv input handling, read CSV or JSON input "
    "(and print the number of rows or records), add logging, add a docstring, wrap the "
    "code in main. Configure an OpenRouter key for free-form requests."
)


def top_level_main(tree):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            return node
    return None


def add_helper(code, helper):
    """Puts a helper function before main() when there is one, else at the end.

    Appending after `sys.exit(main())` would leave it defined too late to be used.
    """
    tree = ast.parse(code)
    main = top_level_main(tree)
    if main is None:
        return code.rstrip() + "\n\n\n" + helper
    start = (main.decorator_list[0].lineno if main.decorator_list else main.lineno) - 1
    lines = code.splitlines(keepends=True)
    head = "".join(lines[:start]).rstrip() + "\n\n\n"
    return head + helper + "\n\n" + "".join(lines[start:])


def call_in_main(code, statements):
    """Inserts statements into main() before its final `return`, or at its end.

    `{arg}` in a statement becomes main's input path: its first parameter's `[1]`
    (the template's `main(argv)`), else `sys.argv[1]`.
    """
    tree = ast.parse(code)
    main = top_level_main(tree)
    if main is None:
        return code, False
    params = main.args.args
    arg = f"{params[0].arg}[1]" if params else "sys.argv[1]"
    last = main.body[-1]
    lines = code.splitlines(keepends=True)
    indent = lines[last.lineno - 1][: len(lines[last.lineno - 1]) - len(lines[last.lineno - 1].lstrip())]
    block = "".join(indent + st.format(arg=arg) + "\n" for st in statements)
    at = last.lineno - 1 if isinstance(last, ast.Return) else last.end_lineno
    return "".join(lines[:at]) + block + "".join(lines[at:]), True


def wants_count(text):
    return re.search(r"\b(count|number of|how many)\b", text) is not None


def offline(code, instruction):
    text = instruction.lower()
    code = code if code.strip() else "import sys\n"
    ast.parse(code)
    done = []
    if "docstring" in text and not has_docstring(ast.parse(code)):
        title = re.sub(r"(?i)^\s*(please\s+)?(add|write)\s+(an?\s+)?(module\s+)?docstring\b\s*(explaining|describing|that says|saying)?\s*(it|this)?\s*[:,.-]?\s*", "", instruction)
        title = title.strip(" .:") or "Describe this script"
        title = " ".join(title.split())[:72]
        code = f'"""{title[:1].upper() + title[1:]}\n\nReads its input file (argv[1]) and prints the result.\n"""\n' + code
        done.append("added a module docstring (its first line is the script's name in the list)")
    if re.search(r"\bmain\b|\bwrap\b", text):
        code, changed = wrap_in_main(code)
        if changed:
            done.append("moved the top-level statements into main() behind a __main__ guard")
    if re.search(r"argv|argument|input file|command line|parse", text) and "sys.argv" not in code:
        code = ensure_import(code, "sys")
        code = code.rstrip() + (
            "\n\n\ndef read_input(path: str) -> str:\n"
            "    \"\"\"Return the text of the input file the runner passes as argv[1].\"\"\"\n"
            "    with open(path, encoding=\"utf-8\") as f:\n"
            "        return f.read()\n\n\n"
            "if len(sys.argv) < 2:\n"
            "    sys.exit(\"usage: script INPUT_FILE\")\n"
            "INPUT = read_input(sys.argv[1])\n"
        )
        done.append("reads the input file named by sys.argv[1] into INPUT")
    if re.search(r"\bcsv\b", text) and "csv.DictReader" not in code:
        code = ensure_import(code, "csv")
        code = add_helper(
            code,
            "def read_rows(path: str) -> list[dict[str, str]]:\n"
            "    \"\"\"Rows of a CSV file with a header line, as dictionaries.\"\"\"\n"
            "    with open(path, newline=\"\", encoding=\"utf-8\") as f:\n"
            "        return list(csv.DictReader(f))\n",
        )
        calls = ["rows = read_rows({arg})"] + (['print(f"{{len(rows)}} rows")'] if wants_count(text) else [])
        code, wired = call_in_main(code, calls)
        done.append("added read_rows(path) for CSV input (csv.DictReader)" + (", called from main()" if wired else ""))
    if re.search(r"\bjson\b", text) and "json.load" not in code:
        code = ensure_import(code, "json")
        code = add_helper(
            code,
            "def read_json(path: str):\n"
            "    \"\"\"The JSON document in a file.\"\"\"\n"
            "    with open(path, encoding=\"utf-8\") as f:\n"
            "        return json.load(f)\n",
        )
        calls = ["document = read_json({arg})"] + (
            ['print(f"{{len(document)}} records")'] if wants_count(text) else []
        )
        code, wired = call_in_main(code, calls)
        done.append("added read_json(path) for JSON input" + (", called from main()" if wired else ""))
    if re.search(r"\blog(ging|s)?\b", text) and "logging.basicConfig" not in code:
        code = ensure_import(code, "logging")
        code = insert_after_header(
            code,
            "\nlogging.basicConfig(level=logging.INFO, format=\"%(asctime)s %(levelname)s %(message)s\")\n"
            "log = logging.getLogger(__name__)\n",
        )
        done.append("set up logging (log.info(...) writes timestamped lines to stderr)")
    if not done:
        code = insert_after_header(code, f"# TODO: {instruction.strip()}\n")
        explanation = "The offline provider has no template for this request; it noted it as a TODO. " + CAPABILITIES
    else:
        explanation = "Offline templates: " + "; ".join(done) + ". " + CAPABILITIES
    compile(code, "<proposal>", "exec")
    return {"code": code, "explanation": explanation, "templates": done}


def main():
    req = json.load(sys.stdin)
    try:
        if req["op"] == "pseudonymise":
            out = pseudonymise(req["code"], req.get("instruction", ""), req.get("names", []))
        elif req["op"] == "offline":
            out = offline(req.get("code", ""), req["instruction"])
        else:
            out = {"error": f"unknown op {req['op']}"}
    except SyntaxError as e:
        out = {"error": f"the code does not parse (line {e.lineno}: {e.msg})"}
    except Exception as e:  # reported, not raised: the caller turns it into a message
        out = {"error": f"{type(e).__name__}: {e}"}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
