"""Checks the answers of one fault under load (scripts/test-faults) and prints its figures.

Usage: fault_check.py NAME BANK ANSWERS TIMES REFERENCE
  NAME       kill, pause, disconnect or restart
  BANK       the faulted bank ('' for the coordinator restart)
  ANSWERS    loadgen --answers file: at_ms customer status latency_ms request_id degraded
             missing score model error-code
  TIMES      "<break unix ms> <return unix ms>"
  REFERENCE  the same format, every bank up: each customer's full score
Exits 1 naming the first rule broken.
"""

import sys

# The coordinator's request timeout in the compose file is 2 s; an answer may take that long
# plus the HTTP and scheduling overhead on a loaded 2-core machine.
DEADLINE_MS = 3000
# "Back in full answers within 2 s of returning".
RECOVERY_MS = 2000


def main() -> int:
    name, bank, answers_path, times_path, reference_path = sys.argv[1:6]
    rows = [line.split() for line in open(answers_path)]
    t_break, t_back = (float(x) for x in open(times_path).read().split())
    reference = {r[1]: (r[7], r[8]) for r in (line.split() for line in open(reference_path))}
    model = next(iter(reference.values()))[1]
    problems = []
    counts = {"full": 0, "degraded": 0, "503": 0, "no answer": 0, "other": 0}
    slow = 0
    last_not_full = None
    for at, customer, status, latency, rid, degraded, missing, score, version, error in rows:
        at, latency = float(at), float(latency)
        if status == "200" and degraded == "0":
            counts["full"] += 1
            if (score, version) != reference[customer]:
                problems.append(f"full answer for {customer} at {at:.0f}: score {score} model {version}, "
                                f"before the fault {reference[customer]}")
        else:
            last_not_full = at
            if status == "200":
                counts["degraded"] += 1
                allowed = {bank} if bank else {"card", "auto", "savings", "home"}
                if not set(missing.split(",")) <= allowed or version != model:
                    problems.append(f"degraded answer at {at:.0f} missing {missing} (model {version})")
            elif status == "503":
                counts["503"] += 1
            elif status == "000" and not bank:
                counts["no answer"] += 1  # the coordinator is down: connection refused
            else:
                counts["other"] += 1
                problems.append(f"request at {at:.0f} for {customer}: status {status} ({error}) after {latency:.0f} ms")
        if status != "000" and latency > DEADLINE_MS:
            slow += 1
            problems.append(f"request at {at:.0f} answered after {latency:.0f} ms (deadline {DEADLINE_MS} ms)")
    if last_not_full is not None and last_not_full < t_break - 1000:
        problems.append(f"answers were not full before the fault (last at {last_not_full:.0f})")
    # When full answers came back for good: the last answer that was not full, scheduled after
    # the return, measured from the return.
    recovery = 0.0 if last_not_full is None else max(0.0, last_not_full - t_back)
    if bank and recovery > RECOVERY_MS:
        problems.append(f"full answers {recovery:.0f} ms after the bank returned (want <= {RECOVERY_MS} ms)")
    if rows and float(rows[-1][0]) - t_back < 5000:
        problems.append("the load ended less than 5 s after the return: nothing shows recovery")
    if not bank:
        # The banks reconnect by themselves: the last 5 s of the load are full answers.
        tail = [r for r in rows if float(r[0]) > float(rows[-1][0]) - 5000]
        if not tail or any(r[2] != "200" or r[5] != "0" for r in tail):
            problems.append("the last 5 s of the load are not all full answers: banks did not reconnect")
    p99 = sorted(float(r[3]) for r in rows if r[2] == "200")
    p99 = p99[int(0.99 * (len(p99) - 1))] if p99 else float("nan")
    print(f"fault {name}: {len(rows)} requests, {counts['full']} full, {counts['degraded']} degraded "
          f"(naming only {bank or 'banks'}), {counts['503']} 503, {counts['no answer']} no answer, "
          f"{counts['other']} other; answered p99 {p99:.0f} ms, over {DEADLINE_MS} ms: {slow}; "
          f"fault {t_back - t_break:.0f} ms; full again {recovery:.0f} ms after the return")
    for p in problems[:10]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
