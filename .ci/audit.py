"""CI: pip-audit over constraints.txt. Fails on a known vulnerability; when the vulnerability
service cannot be reached (nothing could be audited), says so and skips instead of passing
silently or failing on the network."""

from __future__ import annotations

import json
import subprocess
import sys

result = subprocess.run(
    [sys.executable, "-m", "pip_audit", "-r", "constraints.txt", "--no-deps", "--disable-pip",
     "--progress-spinner", "off", "--format", "json"],
    capture_output=True,
    text=True,
)  # fmt: skip
try:
    report = json.loads(result.stdout)
except ValueError:
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    print(f"pip-audit: SKIPPED, the vulnerability service could not be reached ({last[:200]})")
    sys.exit(0)
dependencies = report.get("dependencies", [])
audited = [d for d in dependencies if "skip_reason" not in d]
vulnerable = [d for d in audited if d.get("vulns")]
if not audited:
    print(
        f"pip-audit: SKIPPED, none of the {len(dependencies)} pinned packages could be looked up "
        "(the vulnerability service is not reachable from this machine)"
    )
    sys.exit(0)
for dependency in vulnerable:
    ids = ", ".join(v["id"] for v in dependency["vulns"])
    print(f"pip-audit: {dependency['name']} {dependency['version']}: {ids}")
skipped = len(dependencies) - len(audited)
print(f"pip-audit: {len(audited)} packages audited, {len(vulnerable)} vulnerable, {skipped} not found")
sys.exit(1 if vulnerable else 0)
