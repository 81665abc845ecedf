#!/usr/bin/env python3
"""Drives headless Chromium through the operator console (W3C WebDriver via
chromedriver, standard library only) and prints one JSON line per check.

Usage: console_browser.py BASE_URL SCREENSHOT_DIR CONSUMER AGGREGATE_ID

Visits every page, waits for the live figures to update without a reload,
clicks through to the consumer's dead letter, redrives it, and searches the
event browser. Exits non-zero (with the reason) on the first failed check;
writes a PNG screenshot of each page into SCREENSHOT_DIR.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BASE, SHOTS, CONSUMER, AGGREGATE_ID = sys.argv[1:5]
os.makedirs(SHOTS, exist_ok=True)


CONTEXT = {}


def fail(msg):
    where = CONTEXT.get("where")
    if where is not None and not CONTEXT.get("failing"):
        CONTEXT["failing"] = True
        try:
            msg += f" (at {where()})"
        except BaseException:
            pass
    print(json.dumps({"ok": False, "error": msg}), flush=True)
    sys.exit(1)


def find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


driver_bin = os.environ.get("CHROMEDRIVER") or find("chromedriver")
chrome_bin = os.environ.get("CHROME_BIN") or find("chromium", "chromium-browser", "google-chrome")
if not driver_bin or not chrome_bin:
    fail("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver "
         f"(found chromedriver={driver_bin}, chromium={chrome_bin})")

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
profile = tempfile.mkdtemp(prefix="console-browser-")
driver = subprocess.Popen([driver_bin, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
WD = f"http://127.0.0.1:{port}"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(WD + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"{}").get("value")
    except urllib.error.HTTPError as e:
        fail(f"webdriver {method} {path}: {e.code} {e.read()[:500]!r}")


for _ in range(100):
    try:
        urllib.request.urlopen(WD + "/status", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
else:
    fail("chromedriver did not start")

session = None
try:
    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": chrome_bin,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={profile}"]}}}}
    value = call("POST", "/session", caps)
    session = value["sessionId"]
    S = f"/session/{session}"

    def where():
        url = call("GET", S + "/url")
        page = call("GET", S + "/source") or ""
        return f"{url}: {page[:1500]}"

    CONTEXT["where"] = where

    def go(url):
        call("POST", S + "/url", {"url": url})

    def source():
        return call("GET", S + "/source")

    def elements(css):
        return call("POST", S + "/elements", {"using": "css selector", "value": css}) or []

    def element(css):
        found = elements(css)
        if not found:
            fail(f"no element {css!r} on {call('GET', S + '/url')}")
        return list(found[0].values())[0]

    def text(css):
        return call("GET", f"{S}/element/{element(css)}/text")

    def attr(css, name):
        return call("GET", f"{S}/element/{element(css)}/attribute/{name}")

    def click(css):
        call("POST", f"{S}/element/{element(css)}/click", {})

    def shot(name):
        png = base64.b64decode(call("GET", S + "/screenshot"))
        path = os.path.join(SHOTS, name + ".png")
        with open(path, "wb") as f:
            f.write(png)
        print(json.dumps({"ok": True, "screenshot": path}), flush=True)

    def check(cond, what):
        if not cond:
            fail(what)
        print(json.dumps({"ok": True, "check": what}), flush=True)

    def wait(cond, what, seconds=10):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if cond():
                return check(True, what)
            time.sleep(0.2)
        fail(what + " (timed out)")

    # Streams: the bus's streams with figures, updated live.
    go(BASE + "/streams")
    wait(lambda: "angzarr-events" in (source() or ""), "streams page lists the event stream")
    wait(lambda: "angzarr-events-dlq" in (source() or ""), "streams page lists the dead-letter stream")
    wait(lambda: int(attr("#live-status", "data-updates") or 0) >= 2,
         "live figures refresh twice without a reload")
    check(text("[data-live='stream.angzarr-events.messages']").strip() not in ("", "0"),
          "event stream shows its message count")
    shot("streams")

    # Consumers: pending, ack pending, redelivered, the lag chart.
    go(BASE + "/consumers")
    wait(lambda: bool(elements("#consumers")), "consumers page opens")
    check(CONSUMER in text("#consumers"), "consumers page lists the consumer")
    wait(lambda: (attr(f"svg[data-chart='{CONSUMER}'] polyline", "points") or "").count(",") >= 2,
         "lag chart has points")
    check(text("[data-live='consumer.laggard.pending']").strip() == "3",
          "a consumer that reads nothing shows all three events pending")
    wait(lambda: any(float(p.split(",")[1]) < 20 for p in
                     (attr("svg[data-chart='laggard'] polyline", "points") or "0,39").split()),
         "the lag chart of that consumer is up at its pending count")
    shot("consumers")

    # Dead letters: click through to the consumer's dead letter.
    go(BASE + "/dead-letters")
    wait(lambda: bool(elements("#dead-letters")), "dead letters page opens")
    check(CONSUMER in text("#dead-letters"), "dead letters page lists the consumer's dead letter")
    shot("dead-letters")
    click("a.dead-letter")
    wait(lambda: "Dead letter #" in source(), "dead letter page opens")
    check("card declined" in text("#dead-letter"), "dead letter shows the reason")
    check(AGGREGATE_ID in text("#envelope"), "dead letter shows the decoded envelope")
    check('"amount": 125' in text("#payload-json"), "payload shown as JSON")
    check("7b" in text("#payload-hex"), "payload shown as hex")
    shot("dead-letter")

    # Redrive it (a POST with the page's CSRF token).
    click("#redrive")
    wait(lambda: bool(elements("#notice")), "redrive answers with a notice")
    check("Redriven 1 dead letter(s) to " + CONSUMER in text("#notice"), "notice counts one redriven")
    shot("redriven")

    # Event browser: search by aggregate id, open the event.
    go(BASE + f"/events?aggregate_type=player&aggregate_id={AGGREGATE_ID}")
    wait(lambda: bool(elements("#events")), "event browser opens")
    check(AGGREGATE_ID in text("#events"), "event browser finds the aggregate's events")
    shot("events")
    click("a.event")
    wait(lambda: bool(elements("#envelope")), "event page opens")
    check("FundsDeposited" in text("#envelope"), "event page shows the decoded envelope")
    shot("event")
    print(json.dumps({"ok": True, "done": True}), flush=True)
finally:
    if session:
        try:
            call("DELETE", f"/session/{session}")
        except SystemExit:
            pass
    driver.terminate()
    try:
        driver.wait(10)
    except Exception:
        driver.kill()
    shutil.rmtree(profile, ignore_errors=True)
