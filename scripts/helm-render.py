#!/usr/bin/env python3
"""`helm lint` and `helm template` for charts/authtrail without the helm binary.

Runs Helm's own engine (Helm 4's Go SDK, the same template functions and lint rules as the CLI)
through the helm-python-sdk wheel from PyPI, pinned in tests/helm/requirements.txt and installed
by .ci/run into tests/helm/py-deps (git-ignored):

    python3 -m pip install --no-deps --target tests/helm/py-deps -r tests/helm/requirements.txt

Usage:
    scripts/helm-render.py lint     [CHART] [-f VALUES.yaml]... [--set-json JSON]...
    scripts/helm-render.py template [CHART] [-f VALUES.yaml]... [--set-json JSON]...
                                    [--name RELEASE] [--namespace NS]
    scripts/helm-render.py version

`template` prints the manifests as `helm template` does: one YAML document per template, each
after a `# Source: CHART/templates/FILE` line, templates in name order, NOTES.txt left out.
`lint` prints every finding and exits 1 on an error (or, with --strict, a warning).
A failed render (a `fail` or `required` in the chart) prints Helm's message and exits 1.

Values files (-f) need PyYAML (pinned beside the SDK); --set-json takes a JSON object that is
deep-merged over them, last one winning, as Helm merges -f and --set-json.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPS = os.path.join(ROOT, "tests", "helm", "py-deps")
if os.path.isdir(DEPS):
    sys.path.insert(0, DEPS)

try:
    import helm_python as helm
except ImportError:
    sys.exit(
        "helm-render: helm_python is not installed; run\n"
        "  python3 -m pip install --no-deps --target tests/helm/py-deps -r tests/helm/requirements.txt"
    )


def merge(dst, src):
    """Deep-merge src into dst (maps merge, anything else replaces), as Helm merges values."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def values(args):
    out = {}
    for path in args.values or []:
        import yaml  # PyYAML, pinned in tests/helm/requirements.txt

        with open(path, encoding="utf-8") as f:
            merge(out, yaml.safe_load(f) or {})
    for text in args.set_json or []:
        merge(out, json.loads(text))
    return out


def template(args):
    with helm.Chart.load(args.chart) as chart:
        manifests = chart.render(
            values(args), name=args.name, namespace=args.namespace, is_install=True
        )
    docs = []
    for path in sorted(manifests):
        body = manifests[path]
        if path.endswith("NOTES.txt") or not body.strip():
            continue
        docs.append(f"---\n# Source: {path}\n{body.strip()}\n")
    sys.stdout.write("".join(docs))


def lint(args):
    report = helm.lint(args.chart, values(args), strict=args.strict, namespace=args.namespace)
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    worst = 0
    for m in report.get("messages") or []:
        print(f"[{names.get(m['severity'], m['severity'])}] {m['path']}: {m['error']}")
        worst = max(worst, m["severity"])
    for e in report.get("errors") or []:
        print(f"[ERROR] {e}")
        worst = 3
    failed = worst >= 3 or (args.strict and worst >= 2)
    print(f"{report.get('total_charts_linted', 0)} chart(s) linted, {'failed' if failed else 'ok'}")
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["lint", "template", "version"])
    p.add_argument("chart", nargs="?", default=os.path.join(ROOT, "charts", "authtrail"))
    p.add_argument("-f", "--values", action="append", help="a values file (repeatable)")
    p.add_argument("--set-json", action="append", help="a JSON object of values (repeatable)")
    p.add_argument("--name", default="authtrail", help="the release name")
    p.add_argument("--namespace", default="default")
    p.add_argument("--strict", action="store_true", help="lint: warnings fail too")
    args = p.parse_args()
    if args.command == "version":
        print(f"helm-python-sdk: libhelm_c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}")
        return 0
    try:
        if args.command == "lint":
            return lint(args)
        template(args)
        return 0
    except helm.HelmError as e:
        print(f"helm-render: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
