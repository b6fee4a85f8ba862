"""`python -m gpucluster.observability.generate`: write the generated deploy files.

Writes deploy/prometheus/rules/guide-names.yml (recording rules from the catalogue) and
deploy/grafana/dashboards/*.json (dashboards as code). Unit tests fail when the committed
files differ from what this writes.
"""

from __future__ import annotations

import sys

from gpucluster.assets import DASHBOARDS_DIR, RULES_DIR
from gpucluster.observability.dashboards import write_dashboards
from gpucluster.observability.rules import render_recording_rules

RECORDING_RULES = RULES_DIR / "guide-names.yml"


def main() -> int:
    RECORDING_RULES.write_text(render_recording_rules(), encoding="utf-8")
    written = [RECORDING_RULES, *write_dashboards(DASHBOARDS_DIR)]
    for path in written:
        print(path.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
