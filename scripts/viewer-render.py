#!/usr/bin/env python3
"""Time the viewer's first useful render in headless Chromium.

Drives Chromium over WebDriver (chromedriver, plain HTTP + JSON, no Selenium): signs in to
`/ui` once (the token goes to the tab's sessionStorage, as the sign-in form puts it), then loads
the page RUNS times (after one warm-up load) and reads, each time, the `authtrail:first-render`
mark ui.js sets once the first event list and the timeline are drawn: milliseconds from the
start of the navigation. It also reports how long the browser waited for `/v1/events` and
`/v1/stats` on each load (Resource Timing).

    scripts/viewer-render.py http://127.0.0.1:9090/ui TOKEN [RUNS] [FRAGMENT]

FRAGMENT is the part after `#` (a view, like `actor=user-000000`); empty for the default view
(the last 24 hours, audit.* hidden). Needs chromium and chromedriver (CHROMIUM, CHROMEDRIVER
override where they are).
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

WAIT_S = 60


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            return json.loads(resp.read() or b"null").get("value")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"webdriver {method} {url}: {e.code} {e.read()[:500]!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find(env, names):
    if os.environ.get(env):
        return os.environ[env]
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    raise SystemExit(f"{names[0]} not found (set {env})")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    ui, token = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    fragment = sys.argv[4] if len(sys.argv) > 4 else ""
    chromium = find("CHROMIUM", ["chromium", "chromium-browser", "google-chrome"])
    chromedriver = find("CHROMEDRIVER", ["chromedriver"])
    port = free_port()
    driver = subprocess.Popen([chromedriver, f"--port={port}", "--allowed-ips=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="viewer-render-")
    try:
        deadline = time.time() + WAIT_S
        while True:
            try:
                if call("GET", f"{base}/status").get("ready"):
                    break
            except (OSError, SystemExit):
                pass
            if time.time() > deadline:
                raise SystemExit("chromedriver did not become ready")
            time.sleep(0.05)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,900",
                     f"--user-data-dir={profile}"]}}}}
        session = call("POST", f"{base}/session", caps)["sessionId"]
        s = f"{base}/session/{session}"

        def js(script):
            return call("POST", f"{s}/execute/sync", {"script": script, "args": []})

        url = ui + ("#" + fragment if fragment else "")
        call("POST", f"{s}/url", {"url": ui})
        js(f"sessionStorage.setItem('authtrail.token', {json.dumps(token)}); return true;")
        rendered, fetches = [], []
        for i in range(runs + 1):
            # A navigation to a fresh query string loads the page anew (a bare reload may be
            # served from the back/forward cache).
            call("POST", f"{s}/url", {"url": url.replace("/ui", f"/ui?run={i}", 1)})
            deadline = time.time() + WAIT_S
            while True:
                got = js("const m = performance.getEntriesByName('authtrail:first-render'); "
                         "if (!m.length) return null; "
                         "const r = performance.getEntriesByType('resource'); "
                         "const d = p => Math.max(0, ...r.filter(e => e.name.includes(p)).map(e => e.duration)); "
                         "return { mark: m[0].startTime, rows: document.querySelectorAll('#events-table tbody tr').length, "
                         "bars: document.querySelectorAll('#tl-svg rect.bar').length, "
                         "events: d('/v1/events?'), stats: d('/v1/stats?'), "
                         "status: document.getElementById('status').textContent };")
                if got:
                    break
                if time.time() > deadline:
                    raise SystemExit(f"run {i}: no first-render mark within {WAIT_S}s")
                time.sleep(0.02)
            label = "warm-up" if i == 0 else f"run {i}"
            print(f"{label}: first render {got['mark']:.0f} ms (events {got['events']:.0f} ms, "
                  f"stats {got['stats']:.0f} ms; {got['rows']} rows, {got['bars']} bar segments; "
                  f"{got['status']})", flush=True)
            if i > 0:
                rendered.append(got["mark"])
                fetches.append((got["events"], got["stats"]))
        call("DELETE", s)
        print(f"first useful render over {runs} runs: p50 {statistics.median(rendered):.0f} ms, "
              f"max {max(rendered):.0f} ms, min {min(rendered):.0f} ms; /v1/events p50 "
              f"{statistics.median(f[0] for f in fetches):.0f} ms, /v1/stats p50 "
              f"{statistics.median(f[1] for f in fetches):.0f} ms")
    finally:
        driver.kill()
        driver.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
