#!/usr/bin/env python3
"""Check every relative link in the repository's Markdown files: the file (or folder) must
exist and a `#anchor` must name a heading of the target (GitHub's slugs) or an explicit
`id`/`name`. External links (http, https, mailto) are not fetched.

usage: scripts/check-links.py [FILE.md ...]    # default: every tracked *.md
Exit 1 and one line per broken link when any is broken.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
REF = re.compile(r'^\s*\[[^\]]+\]:\s*(\S+)')
HTML_ID = re.compile(r'<(?:a|span|div)[^>]*\b(?:id|name)="([^"]+)"')


def slug(text):
    text = re.sub(r'<[^>]+>', '', text)             # inline HTML
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', text)  # links keep their text
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)             # keeps letters, digits, _ and -
    return text.replace(' ', '-')


def lines_outside_code(path):
    fence = None
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            m = re.match(r'^\s*(`{3,}|~{3,})', line)
            if m:
                if fence is None:
                    fence = m.group(1)[0] * len(m.group(1))
                elif line.strip().startswith(fence):
                    fence = None
                continue
            if fence is None:
                yield n, line


_anchors = {}


def anchors(path):
    if path not in _anchors:
        seen, out = {}, set()
        for _, line in lines_outside_code(path):
            m = re.match(r'^(#{1,6})\s+(.*?)\s*#*\s*$', line)
            if m:
                s = slug(m.group(2))
                k = seen.get(s, 0)
                seen[s] = k + 1
                out.add(s if k == 0 else '%s-%d' % (s, k))
            out.update(HTML_ID.findall(line))
        _anchors[path] = out
    return _anchors[path]


def targets(path):
    for n, line in lines_outside_code(path):
        line = re.sub(r'(`+).*?\1', '', line)       # inline code is not a link
        for m in LINK.finditer(line):
            yield n, m.group(1)
        m = REF.match(line)
        if m:
            yield n, m.group(1)


def check(path):
    bad = []
    for n, target in targets(path):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):
            continue                                  # http:, https:, mailto:
        file_part, _, anchor = target.partition('#')
        if file_part:
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
            if not os.path.exists(dest):
                bad.append((n, target, 'no such file'))
                continue
        else:
            dest = path
        if anchor and dest.endswith('.md') and os.path.isfile(dest):
            if anchor not in anchors(dest):
                bad.append((n, target, 'no such anchor in %s' % os.path.relpath(dest, ROOT)))
    return bad


def main(argv):
    os.chdir(ROOT)
    files = argv or subprocess.run(['git', 'ls-files', '*.md'], capture_output=True,
                                   text=True, check=True).stdout.split()
    broken = 0
    for f in files:
        for n, target, why in check(f):
            print('%s:%d: %s: %s' % (f, n, target, why))
            broken += 1
    print('%d files, %d broken links' % (len(files), broken), file=sys.stderr)
    return 1 if broken else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
