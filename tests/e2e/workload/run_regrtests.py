# Runs CPython regression test modules inside the guest, JOBS at a time, one regrtest
# process per module, and prints one JSON line per module (then "DONE") on stdout:
#   {"module", "rc", "seconds", "run", "failures", "errors", "skipped", "skips", "failed",
#    "log_tail"}
# argv[1] is a JSON object {"jobs": N, "timeout": S, "modules": [[name, extra args...], ...]}.
# Counts come from regrtest's JUnit XML, so a module that ran no test case is visible as
# such (regrtest itself exits 0 for a module skipped as a whole).
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

spec = json.loads(sys.argv[1])
work = tempfile.mkdtemp(prefix="regrtest-")
lock = threading.Lock()
queue = list(spec["modules"])


def run(entry):
    name, extra = entry[0], entry[1:]
    xml_path = os.path.join(work, name + ".xml")
    argv = [sys.executable, "-m", "test", "--fail-env-changed",
            "--timeout", str(spec["timeout"]), "--junit-xml", xml_path, *extra, name]
    start = time.monotonic()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, cwd=work)
    seconds = round(time.monotonic() - start, 1)
    result = {"module": name, "args": extra, "rc": proc.returncode, "seconds": seconds,
              "run": 0, "failures": 0, "errors": 0, "skipped": 0, "skips": {},
              "failed": []}
    try:
        for case in ET.parse(xml_path).getroot().iter("testcase"):
            result["run"] += 1
            for child in case:
                if child.tag in ("failure", "error"):
                    result[child.tag + "s"] += 1
                    # The test's id and the last lines of its traceback.
                    tail = (child.text or child.get("message") or "").strip().splitlines()[-3:]
                    result["failed"].append(case.get("name", "?") + ": " + " | ".join(tail))
                elif child.tag == "skipped":
                    result["skipped"] += 1
                    why = (child.get("message") or child.text or "").strip()[:120]
                    result["skips"][why] = result["skips"].get(why, 0) + 1
    except (OSError, ET.ParseError) as e:
        result["xml_error"] = str(e)
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 or result["run"] == 0:
        result["log_tail"] = out[-6000:]
    with lock:
        print(json.dumps(result), flush=True)


def worker():
    while True:
        with lock:
            if not queue:
                return
            entry = queue.pop(0)
        run(entry)


threads = [threading.Thread(target=worker) for _ in range(max(1, spec["jobs"]))]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("DONE", flush=True)
