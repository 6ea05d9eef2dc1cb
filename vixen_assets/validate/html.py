"""The HTML report: one self-contained page (inline CSS and script, no network) with the summary counts and a
table of every issue that sorts by any column and filters by severity, rule and asset."""

from __future__ import annotations

import html
import json
from typing import Any

_SEV = {0: "error", 1: "warning", 2: "info", 3: "hint"}

_SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const rows = [];
  for (const a of data.assets) {
    if (a.status !== 'ok') rows.push({severity: 'error', code: 'job.' + a.status, uri: a.uri, pointer: '',
                                      message: a.detail || a.status});
    for (const m of a.issues.messages) rows.push({severity: SEV[m.severity], code: m.code, uri: a.uri,
                                                   pointer: m.pointer, message: m.message});
  }
  const tbody = document.querySelector('#issues tbody');
  const sel = {severity: document.getElementById('f-severity'), code: document.getElementById('f-rule'),
               uri: document.getElementById('f-asset')};
  const text = document.getElementById('f-text');
  for (const key of ['code', 'uri']) {
    for (const v of [...new Set(rows.map(r => r[key]))].sort()) {
      const o = document.createElement('option'); o.value = v; o.textContent = v; sel[key].appendChild(o);
    }
  }
  let sortKey = 'severity', sortDir = 1;
  const order = {error: 0, warning: 1, info: 2, hint: 3};
  function render() {
    const q = text.value.toLowerCase();
    const shown = rows.filter(r => (!sel.severity.value || r.severity === sel.severity.value) &&
      (!sel.code.value || r.code === sel.code.value) && (!sel.uri.value || r.uri === sel.uri.value) &&
      (!q || (r.message + ' ' + r.pointer).toLowerCase().includes(q)));
    shown.sort((a, b) => {
      const x = sortKey === 'severity' ? order[a.severity] - order[b.severity] : a[sortKey].localeCompare(b[sortKey]);
      return sortDir * x;
    });
    tbody.textContent = '';
    for (const r of shown) {
      const tr = document.createElement('tr'); tr.className = 'sev-' + r.severity;
      for (const k of ['severity', 'code', 'uri', 'pointer', 'message']) {
        const td = document.createElement('td'); td.textContent = r[k]; tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
    document.getElementById('shown').textContent = shown.length + ' of ' + rows.length + ' issues shown';
  }
  for (const th of document.querySelectorAll('#issues th')) {
    th.addEventListener('click', () => {
      const k = th.dataset.key; sortDir = (k === sortKey) ? -sortDir : 1; sortKey = k; render();
    });
  }
  for (const s of [...Object.values(sel), text]) s.addEventListener('input', render);
  render();
})();
"""

_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
.cards{display:flex;gap:1em;margin:1em 0}.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em}
.card b{display:block;font-size:1.6em}
table{border-collapse:collapse;width:100%;table-layout:fixed}th:nth-child(1){width:6em}
th:nth-child(2){width:18%}th:nth-child(3){width:20%}th:nth-child(4){width:16%}th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;
vertical-align:top;overflow-wrap:anywhere}th{cursor:pointer;background:#f4f4f4;user-select:none}
tr.sev-error td:first-child{color:#b00020;font-weight:600}tr.sev-warning td:first-child{color:#a05a00}
tr.sev-info td:first-child{color:#2255aa}.filters{display:flex;gap:.6em;margin:.6em 0;flex-wrap:wrap}
"""


def render(report: dict[str, Any]) -> str:
    """The page for a report given as :meth:`ValidationReport.to_dict` data."""
    s = report["summary"]
    cards = [("assets", s["assets"]), ("errors", s["numErrors"]), ("warnings", s["numWarnings"]),
             ("infos", s["numInfos"]), ("crashed", s["crashed"]), ("timeouts", s["timeouts"])]
    card_html = "".join(f'<div class="card" id="count-{k}"><b>{v}</b>{k}</div>' for k, v in cards)
    data = json.dumps(report, default=str).replace("</", "<\\/")
    sev = json.dumps(_SEV)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vixen-assets validate report</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<style>{_CSS}</style></head><body>
<h1>vixen-assets validate</h1>
<p>{html.escape(report["validator"]["name"])} {html.escape(report["validator"]["version"])}</p>
<div class="cards">{card_html}</div>
<div class="filters">
<select id="f-severity"><option value="">all severities</option><option>error</option><option>warning</option>
<option>info</option></select>
<select id="f-rule"><option value="">all rules</option></select>
<select id="f-asset"><option value="">all assets</option></select>
<input id="f-text" type="search" placeholder="search messages and pointers">
<span id="shown"></span></div>
<table id="issues"><thead><tr><th data-key="severity">severity</th><th data-key="code">rule</th>
<th data-key="uri">asset</th><th data-key="pointer">pointer</th><th data-key="message">message</th></tr></thead>
<tbody></tbody></table>
<script id="report-data" type="application/json">{data}</script>
<script>const SEV = {sev};{_SCRIPT}</script>
</body></html>
"""
