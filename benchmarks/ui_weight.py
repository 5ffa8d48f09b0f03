"""What the MLflow UI weighs in a browser: the runs table page, first visit and repeat visit.

    python -m benchmarks.ui_weight http://127.0.0.1:8080 [--experiment ID] [--mbit 100 --latency-ms 2 | --no-throttle]
                                   [--user NAME --password PASS] [--repeat 3] [--json out.json]

Playwright drives Debian's Chromium (as tests/test_browser.py does) to the runs table,
``/#/experiments/<id>?workflowType=machine_learning``. A first visit is a fresh browser
context, so an empty cache; the repeat visit reloads the same page in the same context.
For each: the bytes that crossed the network (Chromium's ``encodedDataLength`` per
request, headers included; 0 for what its cache served), the bytes the page received after
decoding, how many scripts were requested and how many of them came over the network, and
the time from navigation start to the first row of the runs table being visible (taken in
the page, per animation frame). The network is throttled through the DevTools protocol
(``Network.emulateNetworkConditions``) when asked, 100 Mbit/s with 2 ms latency by
default from the command line. The compression A/B is the same measurement with
``Accept-Encoding: identity`` sent on every request (Chromium keeps a header it is given).
From the command line both modes are measured ``--repeat`` times, interleaved; the table
gives medians, and the spread of the times.

A shared stack signs in with ``--user``/``--password`` (or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD); its self-signed certificate is not checked here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from collections import defaultdict

CHROMIUM = "/usr/bin/chromium"
# As tests/test_browser.py: no first-run chatter, nothing fetched from the internet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# A row of the runs table (an ag-grid: role=row) holding a link to a run.
FIRST_ROW = '[role="grid"] [role="row"] a[href*="/runs/"]'
# In every document of the context: performance.now() (ms since navigation start) of the
# first animation frame in which a runs-table row is laid out and visible.
FIRST_ROW_PROBE = """
(() => {
  const selector = %s;
  const tick = () => {
    const row = document.querySelector(selector);
    if (row && row.checkVisibility() && row.getBoundingClientRect().height > 0) {
      window.__firstRowMs = performance.now();
      return;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();
""" % json.dumps(FIRST_ROW)
DEFAULT_THROTTLE = {"mbit": 100, "latency_ms": 2}
PAGE_TIMEOUT_MS = 120_000
IDLE_TIMEOUT_MS = 30_000


def runs_page_url(base_url: str, experiment_id: str) -> str:
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


class NetworkLog:
    """Every request of one page as the DevTools protocol reports it, per visit."""

    def __init__(self, cdp):
        self.requests: dict[str, dict] = defaultdict(lambda: {"decoded": 0, "encoded": 0})
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.requestServedFromCache", self._memory_cache)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.responseReceivedExtraInfo", self._raw_response)
        cdp.on("Network.dataReceived", self._data)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.loadingFailed", self._failed)

    def clear(self) -> None:
        self.requests.clear()

    def _sent(self, event):
        self.requests[event["requestId"]].update(url=event["request"]["url"], type=event.get("type", "Other"))

    def _memory_cache(self, event):
        self.requests[event["requestId"]]["memory_cache"] = True

    def _response(self, event):
        response = event["response"]
        headers = {name.lower(): value for name, value in response.get("headers", {}).items()}
        self.requests[event["requestId"]].update(
            type=event.get("type", "Other"), status=response.get("status"),
            disk_cache=bool(response.get("fromDiskCache")), prefetch_cache=bool(response.get("fromPrefetchCache")),
            encoding=headers.get("content-encoding", ""), cache_control=headers.get("cache-control", ""))

    def _raw_response(self, event):
        # The status as it came over the network: 304 for a revalidation, which
        # responseReceived reports with the cached answer's 200.
        self.requests[event["requestId"]]["network_status"] = event.get("statusCode")

    def _data(self, event):
        self.requests[event["requestId"]]["decoded"] += event["dataLength"]

    def _finished(self, event):
        self.requests[event["requestId"]].update(encoded=event["encodedDataLength"], finished=True)

    def _failed(self, event):
        self.requests[event["requestId"]]["failed"] = event.get("errorText", "failed")

    def summary(self) -> dict:
        requests = [r for r in self.requests.values() if "url" in r and not r["url"].startswith("data:")]

        def cached(r):
            return r.get("memory_cache") or r.get("disk_cache") or r.get("prefetch_cache")

        network = [r for r in requests if not cached(r) and "status" in r]
        scripts = [r for r in requests if r.get("type") == "Script"]
        downloaded = [r for r in scripts if not cached(r) and r.get("network_status", r.get("status")) == 200]
        searches = [r for r in network if "/runs/search" in r["url"]]
        return {
            "requests": len(requests),
            "from_network": len(network),
            "from_cache": sum(1 for r in requests if cached(r)),
            "revalidated_304": sum(1 for r in network if r.get("network_status") == 304),
            "failed": sum(1 for r in requests if r.get("failed")),
            # Requests whose answer this page's session never saw: the UI's telemetry worker
            # script (3 KB) is answered to the worker's own target, so its bytes are not
            # counted here (the request and its network status are).
            "no_response_seen": sum(1 for r in requests if "status" not in r and not r.get("failed")),
            "bytes_transferred": sum(r["encoded"] for r in requests if not cached(r)),
            "bytes_decoded": sum(r["decoded"] for r in requests),
            "gzip_responses": sum(1 for r in network if r.get("encoding") == "gzip"),
            "scripts": len(scripts),
            "scripts_downloaded": len(downloaded),
            "script_bytes_downloaded": sum(r["encoded"] for r in downloaded),
            "scripts_from_cache": sum(1 for r in scripts if cached(r)),
            "runs_search": [{"bytes_transferred": r["encoded"], "bytes_decoded": r["decoded"],
                             "encoding": r.get("encoding") or "identity"} for r in searches],
        }


def _visit(page, network: NetworkLog, go) -> dict:
    """One navigation (``go``), until the first row shows and the network is quiet."""
    network.clear()
    started = time.perf_counter()
    go()
    try:
        page.locator(FIRST_ROW).first.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    except Exception as error:
        unfinished = [r["url"] for r in network.requests.values() if "url" in r and not r.get("finished")]
        raise RuntimeError(f"no runs table row within {PAGE_TIMEOUT_MS / 1000:.0f} s at {page.url}: "
                           f"{network.summary()['failed']} requests failed, unfinished: {unfinished[:10]}") from error
    seen_after_s = time.perf_counter() - started
    try:
        page.wait_for_load_state("networkidle", timeout=IDLE_TIMEOUT_MS)
        idle = True
    except Exception:  # the UI kept a request going: report what arrived until then
        idle = False
    timing = page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        return {first_row_ms: window.__firstRowMs ?? null,
                dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
                load_ms: nav ? nav.loadEventEnd : null};
    }""")
    rows = page.locator('[role="grid"] [role="row"]:has(a[href*="/runs/"])').count()
    return {**network.summary(), **{k: (round(v, 1) if v is not None else None) for k, v in timing.items()},
            "first_row_wall_ms": round(seen_after_s * 1000, 1), "network_idle": idle, "rows_rendered": rows}


def measure_runs_page(base_url: str, experiment_id: str, *, throttle: dict | None = None,
                      accept_encoding_identity: bool = False, context_kwargs: dict | None = None,
                      browser=None) -> dict:
    """First and repeat visit of the runs table page of ``experiment_id``.

    ``throttle``: {"mbit": download and upload Mbit/s, "latency_ms": added latency}, or None
    for the machine's own network. ``accept_encoding_identity``: every request asks for no
    compression. ``context_kwargs``: for Playwright's ``new_context`` (``http_credentials``
    and ``ignore_https_errors`` for a shared stack). ``browser``: a Chromium to reuse;
    otherwise one is launched for this measurement.
    """
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            own = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                return measure_runs_page(base_url, experiment_id, throttle=throttle,
                                         accept_encoding_identity=accept_encoding_identity,
                                         context_kwargs=context_kwargs, browser=own)
            finally:
                own.close()

    options = {"viewport": {"width": 1440, "height": 900}, **(context_kwargs or {})}
    if accept_encoding_identity:
        options["extra_http_headers"] = {**options.get("extra_http_headers", {}), "Accept-Encoding": "identity"}
    context = browser.new_context(**options)  # a fresh context: an empty cache
    try:
        context.add_init_script(FIRST_ROW_PROBE)
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        network = NetworkLog(cdp)
        if throttle:
            rate = throttle["mbit"] * 1_000_000 / 8  # bytes per second
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": throttle["latency_ms"],
                "downloadThroughput": rate, "uploadThroughput": rate})
        url = runs_page_url(base_url, experiment_id)
        first = _visit(page, network, lambda: page.goto(url))
        repeat = _visit(page, network, lambda: page.reload())
    finally:
        context.close()
    return {"url": url, "throttle": throttle, "accept_encoding": "identity" if accept_encoding_identity else "browser",
            "first_visit": first, "repeat_visit": repeat}


# -- command line ----------------------------------------------------------------------------
def _api(base_url: str, path: str, body: dict, auth: tuple[str, str] | None) -> dict:
    import base64
    import ssl

    request = urllib.request.Request(f"{base_url.rstrip('/')}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    context = ssl._create_unverified_context() if base_url.startswith("https") else None  # as the browser here
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return json.loads(response.read())


def busiest_experiment(base_url: str, auth: tuple[str, str] | None) -> str:
    """The experiment whose runs table has the most rows (up to 100 counted per experiment)."""
    experiments = _api(base_url, "/api/2.0/mlflow/experiments/search", {"max_results": 50}, auth).get("experiments", [])
    counts = {e["experiment_id"]: len(_api(base_url, "/api/2.0/mlflow/runs/search",
                                           {"experiment_ids": [e["experiment_id"]], "max_results": 100},
                                           auth).get("runs", []))
              for e in experiments}
    if not counts or max(counts.values()) == 0:
        raise SystemExit("no experiment with runs on this stack: name one with --experiment, or log some runs")
    return max(counts, key=counts.get)


MEASURES = [("bytes_transferred", "bytes over the network"), ("bytes_decoded", "bytes after decoding"),
            ("requests", "requests"), ("from_cache", "served from cache"), ("revalidated_304", "revalidated (304)"),
            ("gzip_responses", "gzip responses"),
            ("scripts", "scripts requested"), ("scripts_downloaded", "scripts downloaded"),
            ("script_bytes_downloaded", "script bytes downloaded"), ("first_row_ms", "first row visible (ms)"),
            ("dom_content_loaded_ms", "DOMContentLoaded (ms)")]


def summarize(samples: dict[str, list[dict]]) -> dict[str, dict]:
    """Per mode and visit: the median of each number over the repetitions, and the spread
    (min, max) of the times; counts and bytes barely move between repetitions."""
    summary = {}
    for mode, runs in samples.items():
        summary[mode] = {}
        for visit in ("first_visit", "repeat_visit"):
            values = {}
            for key, _ in MEASURES:
                numbers = [run[visit][key] for run in runs if run[visit][key] is not None]
                values[key] = statistics.median(numbers) if numbers else None
                if key.endswith("_ms") and numbers:
                    values[key + "_spread"] = [min(numbers), max(numbers)]
            summary[mode][visit] = values
    return summary


def table(summary: dict[str, dict]) -> str:
    columns = [(mode, visit) for mode in summary for visit in ("first_visit", "repeat_visit")]
    header = "| measure | " + " | ".join(f"{mode}, {visit.split('_')[0]}" for mode, visit in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for key, label in MEASURES:
        cells = []
        for mode, visit in columns:
            value, spread = summary[mode][visit][key], summary[mode][visit].get(key + "_spread")
            cell = "-" if value is None else f"{value:,.0f}"
            if spread and spread[0] != spread[1]:
                cell += f" ({spread[0]:,.0f}-{spread[1]:,.0f})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="the stack as a browser reaches it, e.g. http://127.0.0.1:8080")
    parser.add_argument("--experiment", help="experiment id (default: the one with the most runs)")
    parser.add_argument("--mbit", type=float, default=DEFAULT_THROTTLE["mbit"])
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_THROTTLE["latency_ms"])
    parser.add_argument("--no-throttle", action="store_true", help="the machine's own network (loopback: no limit)")
    parser.add_argument("--user", default=os.environ.get("MLFLOW_TRACKING_USERNAME"))
    parser.add_argument("--password", default=os.environ.get("MLFLOW_TRACKING_PASSWORD"))
    parser.add_argument("--repeat", type=int, default=3, help="measurements per mode, interleaved (default 3)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    auth = (args.user, args.password) if args.user and args.password else None
    experiment_id = args.experiment or busiest_experiment(args.base_url, auth)
    throttle = None if args.no_throttle else {"mbit": args.mbit, "latency_ms": args.latency_ms}
    context_kwargs = {"ignore_https_errors": True}
    if auth:
        context_kwargs["http_credentials"] = {"username": auth[0], "password": auth[1]}

    from playwright.sync_api import sync_playwright

    samples: dict[str, list[dict]] = {"gzip": [], "identity": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(max(1, args.repeat)):  # the two modes interleaved, so drift hits both
                for mode in samples:
                    samples[mode].append(measure_runs_page(
                        args.base_url, experiment_id, throttle=throttle, accept_encoding_identity=mode == "identity",
                        context_kwargs=context_kwargs, browser=browser))
        finally:
            browser.close()
    summary = summarize(samples)
    where = f"{args.base_url}, experiment {experiment_id}, " + (
        f"throttled to {throttle['mbit']:g} Mbit/s and {throttle['latency_ms']:g} ms" if throttle else "not throttled")
    print(f"The runs table page ({where}): first visit (empty cache) and repeat visit (reload); "
          f"medians of {len(samples['gzip'])}, times with their spread\n")
    print(table(summary))
    results = {"experiment_id": experiment_id, "throttle": throttle, "summary": summary, "samples": samples}
    print()
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
