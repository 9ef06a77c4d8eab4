"""static/ is served as is, with no build step, to browsers as old as IE11: every script must
parse as ES5, and no script may put data into the page as HTML. The npm packages the pages load
from /vendor must parse as ES5 too.

acorn (a devDependency in package.json) parses each script with ecmaVersion 5 under node; a
walk over its syntax tree lists the HTML sinks (innerHTML / outerHTML assignments,
insertAdjacentHTML, document.write) fed anything but a string literal.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = REPO_ROOT / "static"
ACORN = REPO_ROOT / "node_modules" / "acorn"
SCRIPTS = sorted(path.relative_to(REPO_ROOT).as_posix() for path in STATIC_DIR.rglob("*.js"))
PAGES = sorted(STATIC_DIR.rglob("*.html"))
# What the pages may load besides static/: npm packages, by URL (served by the app from node_modules).
VENDOR_SCRIPTS = {"/vendor/sockjs.min.js": "node_modules/sockjs-client/dist/sockjs.min.js",
                  "/vendor/smoothie.js": "node_modules/smoothie/smoothie.js"}

# Reads [{name, source}] on stdin; writes {name: {error, sinks}}: the ES5 parse error (or null)
# and the HTML sinks given something other than a string literal.
CHECKER = r"""
const acorn = require(process.argv[1]);
const SINK_PROPERTIES = new Set(['innerHTML', 'outerHTML']);
const SINK_METHODS = {insertAdjacentHTML: 1, write: 0, writeln: 0};  // name: index of the HTML argument

function propertyName(member) {
  if (!member || member.type !== 'MemberExpression') return null;
  if (!member.computed && member.property.type === 'Identifier') return member.property.name;
  if (member.computed && member.property.type === 'Literal') return String(member.property.value);
  return null;
}

function isConstant(node) {
  return !node || (node.type === 'Literal' && typeof node.value === 'string');
}

function sinks(ast, source) {
  const found = [];
  const report = (node, what) => found.push({line: node.loc.start.line, what, code: source.slice(node.start, node.end).slice(0, 120)});
  (function walk(node) {
    if (Array.isArray(node)) { node.forEach(walk); return; }
    if (!node || typeof node.type !== 'string') return;
    if (node.type === 'AssignmentExpression' && SINK_PROPERTIES.has(propertyName(node.left)) && !isConstant(node.right)) {
      report(node, propertyName(node.left) + ' assignment');
    }
    if (node.type === 'CallExpression') {
      const name = propertyName(node.callee);
      const isDocumentWrite = (name === 'write' || name === 'writeln') && node.callee.object.type === 'Identifier' &&
        node.callee.object.name === 'document';
      if ((name === 'insertAdjacentHTML' || isDocumentWrite) && !isConstant(node.arguments[SINK_METHODS[name]])) {
        report(node, name + ' call');
      }
    }
    for (const key of Object.keys(node)) {
      if (key !== 'loc' && node[key] && typeof node[key] === 'object') walk(node[key]);
    }
  })(ast);
  return found;
}

let input = '';
process.stdin.on('data', chunk => { input += chunk; });
process.stdin.on('end', () => {
  const out = {};
  for (const {name, source} of JSON.parse(input)) {
    try {
      const ast = acorn.parse(source, {ecmaVersion: 5, sourceType: 'script', locations: true});
      out[name] = {error: null, sinks: sinks(ast, source)};
    } catch (e) {
      out[name] = {error: e.message, sinks: []};
    }
  }
  process.stdout.write(JSON.stringify(out));
});
"""


def check(sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: the ES5 check runs acorn under Node.js (apt-get install nodejs npm)", pytrace=False)
    if not (ACORN / "package.json").is_file():
        pytest.fail(f"{ACORN} is missing: run `npm ci` in {REPO_ROOT} (acorn is a devDependency)", pytrace=False)
    payload = json.dumps([{"name": name, "source": source} for name, source in sources.items()])
    done = subprocess.run([node, "-e", CHECKER, str(ACORN)], input=payload, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def inline_scripts(page: Path) -> dict[str, str]:
    html = page.read_text(encoding="utf-8")
    found = {}
    for number, match in enumerate(re.finditer(r"<script\b([^>]*)>(.*?)</script\s*>", html, re.I | re.S), 1):
        if match.group(2).strip():
            found[f"{page.relative_to(REPO_ROOT).as_posix()} inline script {number}"] = match.group(2)
    return found


@pytest.fixture(scope="module")
def report() -> dict[str, dict[str, Any]]:
    sources = {name: (REPO_ROOT / name).read_text(encoding="utf-8") for name in SCRIPTS}
    for page in PAGES:
        sources.update(inline_scripts(page))
    return check(sources)


def test_the_static_folder_has_the_dashboard_scripts() -> None:
    assert {"static/realtime-client.js", "static/dashboard.js", "static/dashboard/core.js"} <= set(SCRIPTS)


@pytest.mark.parametrize("url", sorted(VENDOR_SCRIPTS))
def test_vendor_script_parses_as_es5(url: str) -> None:
    path = REPO_ROOT / VENDOR_SCRIPTS[url]
    assert path.is_file(), f"{path} is missing: run ./scripts/install"
    result = check({url: path.read_text(encoding="utf-8")})[url]
    assert result["error"] is None, f"{url} ({VENDOR_SCRIPTS[url]}) is not ES5: {result['error']}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_parses_as_es5(report: dict[str, dict[str, Any]], name: str) -> None:
    assert report[name]["error"] is None, f"{name} is not ES5: {report[name]['error']}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_puts_no_data_into_html(report: dict[str, dict[str, Any]], name: str) -> None:
    assert report[name]["sinks"] == [], f"{name} writes data as HTML (use textContent / text nodes): {report[name]['sinks']}"


def test_inline_scripts_are_es5_and_pages_load_only_served_scripts(report: dict[str, dict[str, Any]]) -> None:
    for name, result in report.items():
        if " inline script " in name:
            assert result == {"error": None, "sinks": []}, (name, result)
    for page in PAGES:
        for src in re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", page.read_text(encoding="utf-8"), re.I):
            assert src in VENDOR_SCRIPTS or (src.startswith("/static/") and f"static/{src[len('/static/'):]}" in SCRIPTS), \
                f"{page.name} loads {src}, which is neither a checked npm package nor a checked script in static/"


def test_the_checker_catches_what_it_looks_for() -> None:
    """Without this, a checker that accepted everything would pass every test above."""
    results = check({
        "let": "let a = 1;",
        "arrow": "var f = () => 1;",
        "template": "var s = `x`;",
        "const": "const b = 2;",
        "es5": "var o = {'enum': 1, get x() { return 1; }}; o.y = [1, 2].map(function (v) { return v; });",
        "innerHTML": "el.innerHTML = doc.name;",
        "computed": "el['outerHTML'] = '<b>' + doc.name + '</b>';",
        "adjacent": "el.insertAdjacentHTML('beforeend', doc.name);",
        "write": "document.write(doc.name);",
        "constants": "el.innerHTML = ''; el.insertAdjacentHTML('beforeend', '<hr>'); el.textContent = doc.name;",
    })
    for name in ("let", "arrow", "template", "const"):
        assert results[name]["error"], (name, results[name])
    assert results["es5"] == {"error": None, "sinks": []}
    for name in ("innerHTML", "computed", "adjacent", "write"):
        assert results[name]["error"] is None and len(results[name]["sinks"]) == 1, (name, results[name])
    assert results["constants"] == {"error": None, "sinks": []}
