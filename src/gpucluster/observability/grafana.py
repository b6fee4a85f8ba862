"""Small builders for Grafana dashboard JSON (schemaVersion 39), used by `dashboards.py`.

Panels are laid out by `dashboard()`: they flow left to right in the order given, wrapping at
the grid's 24 columns; a row starts a new line. Ids are assigned in the same order, so a
dashboard's JSON only changes where its definition does.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMA_VERSION = 39
GRID_WIDTH = 24
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "prometheus"}
# What a template variable's "All" means in a `=~` matcher (and what panel_queries substitutes).
ALL_VALUE = ".+"
TAG = "gpu-cluster"

Json = dict[str, Any]


def target(expr: str, legend: str = "", ref_id: str = "A") -> Json:
    """One Prometheus query of a panel."""
    return {
        "datasource": dict(DATASOURCE),
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": True,
        "refId": ref_id,
    }


def _targets(queries: list[tuple[str, str]]) -> list[Json]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)]


def _thresholds(red_at: float | None) -> Json:
    steps: list[Json] = [{"color": "green", "value": None}]
    if red_at is not None:
        steps.append({"color": "red", "value": red_at})
    return {"mode": "absolute", "steps": steps}


def panel(
    kind: str,
    title: str,
    queries: list[tuple[str, str]],
    *,
    description: str = "",
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    red_at: float | None = None,
    options: Json | None = None,
) -> Json:
    """A panel of `kind` with one target per (expr, legend) in `queries`; placed by dashboard()."""
    defaults: Json = {"unit": unit, "thresholds": _thresholds(red_at)}
    if kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "thresholdsStyle": {"mode": "off" if red_at is None else "dashed"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
    return {
        "datasource": dict(DATASOURCE),
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "options": options or {},
        "targets": _targets(queries),
        "title": title,
        "type": kind,
    }


def timeseries(title: str, queries: list[tuple[str, str]], **kwargs: Any) -> Json:
    """A time series panel with a table legend (last and max per series)."""
    options = {
        "legend": {
            "calcs": ["lastNotNull", "max"],
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, queries, options=options, **kwargs)


def stat(title: str, expr: str, **kwargs: Any) -> Json:
    """A single-value panel showing the last value of `expr`."""
    options = {
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }
    kwargs.setdefault("width", 4)
    kwargs.setdefault("height", 4)
    return panel("stat", title, [(expr, "")], options=options, **kwargs)


def row(title: str) -> Json:
    """A (non-collapsed) row header; the panels after it belong to it."""
    return {
        "collapsed": False,
        "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": 0},
        "panels": [],
        "title": title,
        "type": "row",
    }


def query_variable(name: str, label: str, query: str) -> Json:
    """A multi-value template variable filled by `query` (label_values(...)), "All" = ALL_VALUE."""
    return {
        "allValue": ALL_VALUE,
        "current": {},
        "datasource": dict(DATASOURCE),
        "definition": query,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


def _layout(panels: list[Json]) -> list[Json]:
    """Copies of `panels` with ids 1.. and grid positions flowing left to right."""
    placed: list[Json] = []
    x = y = line_height = 0
    for number, item in enumerate(panels, start=1):
        item = {**item, "id": number}
        w, h = item["gridPos"]["w"], item["gridPos"]["h"]
        if item["type"] == "row" or x + w > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        item["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x, line_height = x + w, max(line_height, h)
        if item["type"] == "row":
            x, y, line_height = 0, y + h, 0
        placed.append(item)
    return placed


def dashboard(
    uid: str,
    title: str,
    panels: list[Json],
    *,
    description: str = "",
    variables: list[Json] | None = None,
    tags: tuple[str, ...] = (),
) -> Json:
    """A whole dashboard, linked to the platform's other dashboards by their common tag."""
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "tags": [TAG],
                "title": "gpu-cluster dashboards",
                "type": "dashboards",
            }
        ],
        "liveNow": False,
        "panels": _layout(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG, *tags],
        "templating": {"list": variables or []},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def resolve_variables(expr: str, names: set[str]) -> str:
    """`expr` with every template variable in `names` replaced by ALL_VALUE, as Grafana's "All".

    ValueError for a variable the dashboard does not define (its panel would never resolve).
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in names:
            raise ValueError(f"unknown template variable ${name} in {expr!r}")
        return ALL_VALUE

    return _VARIABLE.sub(substitute, expr)


def percentile_label(quantile: float) -> str:
    """0.95 -> "p95"."""
    return f"p{round(quantile * 100)}"
