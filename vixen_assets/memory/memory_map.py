"""The memory map: one self-contained HTML page drawn from :func:`~vixen_assets.memory.report.memory_report`.

Every ``VkDeviceMemory`` block is a bar (its length proportional to its size, the largest block filling the row);
used ranges are coloured by budget category (mesh, texture, accel, staging, ...), free ranges are grey, and
hovering a range shows its owner's name, type, category, size and offset. The budget and the heaps are on top.
Given a second report (``before=``, e.g. taken just before ``Device.defragment()``) the page shows both, before
and after, with a switch between them: the picture VMA's ``VmaDumpVis`` draws, interactive.

The page has no external resources (no scripts, fonts or styles fetched): the report is embedded as JSON and
drawn by a small inline script, so the file can be mailed or attached to a bug report.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

__all__ = ["memory_map_html", "write_memory_map"]

_STYLE = """
body{font:13px system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:18px;margin:0 0 8px} h2{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:4px 0 10px} td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#eee} td:first-child,th:first-child{text-align:left}
.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px;border:1px solid #888}
.block{display:flex;align-items:center;margin:3px 0}
.label{width:230px;flex:none;font-family:monospace;font-size:11px;white-space:nowrap;overflow:hidden}
.bar{position:relative;height:18px;background:#d0d0d0;border:1px solid #888;flex:none}
.seg{position:absolute;top:0;height:100%;box-sizing:border-box;border-right:1px solid rgba(0,0,0,.25)}
.free{background:#d0d0d0;border-right:none}
.seg:hover{outline:2px solid #000;z-index:2}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:4px 8px;border-radius:4px;
font-size:12px;display:none;z-index:10;white-space:pre}
.tabs button{font:inherit;padding:3px 10px;margin-right:4px} .tabs button.on{background:#345;color:#fff}
.summary{margin:4px 0 8px;color:#444}
"""

_SCRIPT = r"""
(function(){
const DATA = JSON.parse(document.getElementById('vixen-data').textContent);
const PALETTE = ['#4e79a7','#f28e2b','#59a14f','#e15759','#76b7b2','#edc948','#b07aa1','#ff9da7','#9c755f',
                 '#8cd17d','#86bcb6','#d37295'];
const FIXED = {mesh:'#4e79a7', meshes:'#4e79a7', texture:'#f28e2b', textures:'#f28e2b', accel:'#e15759',
               staging:'#edc948', voxels:'#59a14f', voxel:'#59a14f', default:'#9c755f'};
const colours = {};
let next = 0;
function colour(cat){
  if (!(cat in colours)) colours[cat] = FIXED[cat] || PALETTE[(next++) % PALETTE.length];
  return colours[cat];
}
function fmt(n){
  const u = [['GiB',30],['MiB',20],['KiB',10]];
  for (const [name, s] of u) if (n >= 2 ** s) return (n / 2 ** s).toFixed(1) + ' ' + name;
  return n + ' B';
}
const tip = document.getElementById('tip');
function show(ev){
  tip.textContent = ev.target.dataset.tip; tip.style.display = 'block';
  tip.style.left = (ev.clientX + 12) + 'px'; tip.style.top = (ev.clientY + 12) + 'px';
}
function hide(){ tip.style.display = 'none'; }
function el(tag, cls, text){
  const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text;
  return e;
}
function drawHeader(rep, into){
  const b = rep.budget || {};
  const t = el('table');
  t.innerHTML = '<tr><th>budget</th><th>limit</th><th>warning at</th><th>used</th><th>peak</th></tr>';
  const r = t.insertRow();
  for (const v of ['primary heap', fmt(b.limit || 0), fmt(b.warning_threshold || 0), fmt(b.used || 0),
                   fmt(b.peak || 0)]) r.insertCell().textContent = v;
  into.appendChild(t);
  const h = el('table');
  h.innerHTML = '<tr><th>heap</th><th>size</th><th>device local</th><th>in blocks</th><th>blocks</th></tr>';
  for (const heap of rep.heaps || []){
    const mine = (rep.blocks || []).filter(x => x.heap === heap.index);
    const row = h.insertRow();
    for (const v of ['#' + heap.index, fmt(heap.size), heap.device_local ? 'yes' : 'no',
                     fmt(mine.reduce((a, x) => a + x.size, 0)), String(mine.length)]) row.insertCell().textContent = v;
  }
  into.appendChild(h);
  const cats = Object.entries(rep.categories || {});
  if (cats.length){
    const c = el('table'); c.className = 'categories';
    c.innerHTML = '<tr><th>category</th><th>bytes</th><th>peak</th><th>live objects</th></tr>';
    for (const [name, v] of cats){
      const row = c.insertRow();
      const cell = row.insertCell(); const i = el('i'); i.style.cssText = 'display:inline-block;width:10px;height:10px;margin-right:4px;background:' + colour(name);
      cell.appendChild(i); cell.appendChild(document.createTextNode(name));
      for (const x of [fmt(v.bytes || 0), fmt(v.peak || 0), String(v.count || 0)]) row.insertCell().textContent = x;
    }
    into.appendChild(c);
  }
}
function drawBlocks(rep, into){
  const blocks = rep.blocks || [];
  const held = blocks.reduce((a, x) => a + x.size, 0);
  const used = blocks.reduce((a, x) => a + x.used, 0);
  into.appendChild(el('div', 'summary', blocks.length + ' blocks (' +
      blocks.filter(x => x.dedicated).length + ' dedicated), ' + fmt(held) + ' held, ' + fmt(used) + ' used (' +
      (held ? (100 * used / held).toFixed(1) : '0.0') + ' %)'));
  const biggest = Math.max(1, ...blocks.map(x => x.size));
  for (const blk of blocks){
    const row = el('div', 'block'); row.dataset.block = blk.id;
    row.appendChild(el('div', 'label', '#' + blk.id + ' ' + blk.purpose + (blk.dedicated ? ' (dedicated)' : '') +
                        ' ' + fmt(blk.size)));
    const bar = el('div', 'bar');
    bar.style.width = 'calc((100% - 240px) * ' + Math.max(blk.size / biggest, 0.01).toFixed(4) + ')';
    const add = (off, size, cls, bg, text) => {
      const s = el('div', cls); s.style.left = (100 * off / blk.size) + '%';
      s.style.width = Math.max(100 * size / blk.size, 0.05) + '%'; if (bg) s.style.background = bg;
      s.dataset.tip = text; s.addEventListener('mousemove', show); s.addEventListener('mouseleave', hide);
      bar.appendChild(s);
    };
    for (const [off, size] of blk.free_ranges || [])
      add(off, size, 'seg free', null, 'free\nsize ' + fmt(size) + '\noffset ' + off);
    for (const [off, size, name, cat, type] of blk.allocations || (blk.used_ranges || []).map(r => [...r, '?', '?', '?']))
      add(off, size, 'seg', colour(cat), (name || '(unnamed)') + '\n' + type + ', category ' + cat + '\nsize ' +
          fmt(size) + '\noffset ' + off + ' in block #' + blk.id);
    row.appendChild(bar);
    into.appendChild(row);
  }
}
function drawLegend(into){
  const lg = el('div', 'legend');
  for (const [cat, c] of Object.entries(colours)){
    const s = el('span'); const i = el('i'); i.style.background = c; s.appendChild(i); s.appendChild(document.createTextNode(cat));
    lg.appendChild(s);
  }
  const s = el('span'); const i = el('i'); i.style.background = '#d0d0d0'; s.appendChild(i); s.appendChild(document.createTextNode('free'));
  lg.appendChild(s);
  into.appendChild(lg);
}
const views = document.getElementById('views');
const tabs = document.getElementById('tabs');
const names = Object.keys(DATA.views);
for (const name of names){
  const v = el('section', 'view'); v.id = 'view-' + name.replace(/\W+/g, '-');
  v.appendChild(el('h2', null, DATA.views[name].label));
  drawHeader(DATA.views[name].report, v);
  drawBlocks(DATA.views[name].report, v);
  views.appendChild(v);
  if (names.length > 1){
    const b = el('button', null, DATA.views[name].label);
    b.addEventListener('click', () => {
      for (const o of views.children) o.style.display = o === v ? '' : 'none';
      for (const o of tabs.children) o.classList.toggle('on', o === b);
    });
    tabs.appendChild(b);
  }
}
drawLegend(document.getElementById('legend'));
if (names.length > 1) tabs.lastChild.click();
document.body.dataset.ready = '1';
})();
"""


def memory_map_html(report: dict[str, Any], *, before: dict[str, Any] | None = None,
                    title: str = "memory map") -> str:
    """Return the page for ``report`` (and ``before``, shown as a second view) as one HTML string.

    :param report: a :func:`~vixen_assets.memory.report.memory_report` (the current state, "after").
    :param before: an earlier report, e.g. taken just before ``Device.defragment()``; ``None`` for one view.
    :param title: the page title.
    """
    views: dict[str, dict[str, Any]] = {}
    if before is not None:
        views["before"] = {"label": "before defragment()", "report": before}
        views["after"] = {"label": "after defragment()", "report": report}
    else:
        views["now"] = {"label": "blocks", "report": report}
    data = json.dumps({"views": views}, separators=(",", ":"), default=str).replace("</", "<\\/")
    esc = html.escape(title)
    device = html.escape(str(report.get("device", "")))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{esc}: {device}</h1>\n"
            f"<div id=\"legend\"></div><div id=\"tabs\" class=\"tabs\"></div><div id=\"views\"></div>"
            f"<div id=\"tip\"></div>\n<script type=\"application/json\" id=\"vixen-data\">{data}</script>\n"
            f"<script>{_SCRIPT}</script>\n</body></html>\n")


def write_memory_map(path: str | Path, report: dict[str, Any], *, before: dict[str, Any] | None = None,
                     title: str = "memory map") -> Path:
    """Write :func:`memory_map_html` to ``path``; return the path.

    :param path: the HTML file to write.
    :param report: the current memory report.
    :param before: an earlier report (a before/after view), or ``None``.
    :param title: the page title.
    """
    out = Path(path)
    out.write_text(memory_map_html(report, before=before, title=title), encoding="utf-8")
    return out
