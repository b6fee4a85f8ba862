"""`python -m gpucluster.observability.generate`: write the generated deploy files.

Writes deploy/prometheus/rules/guide-names.yml (recording rules from the catalogue) and
deploy/grafana/dashboards/*.json (dashboards as code). Unit tests fail when the committed
files differ from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpucluster.observability.dashboards import write_dashboards
from gpucluster.observability.rules import render_recording_rules

REPO = Path(__file__).resolve().parents[3]
RECORDING_RULES = REPO / "deploy" / "prometheus" / "rules" / "guide-names.yml"
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"


def main() -> int:
    RECORDING_RULES.write_text(render_recording_rules(), encoding="utf-8")
    written = [RECORDING_RULES, *write_dashboards(DASHBOARDS_DIR)]
    for path in written:
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
