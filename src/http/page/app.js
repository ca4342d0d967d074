// guardian's status page: live parts every two seconds, sorting, actions by fetch,
// the log followed. Without it, the page still shows and its forms still act.
'use strict';
(function () {
  const live = document.getElementById('live');
  if (!live) return;
  const url = document.body.dataset.live;
  let sortCol = -1, sortDir = 1, busy = false;

  function key(td) {
    const v = td.dataset.v !== undefined ? td.dataset.v : td.textContent.trim();
    const n = Number(v);
    return v !== '' && !Number.isNaN(n) ? n : v.toLowerCase();
  }
  // Sorts the rows of the jobs table in `root` by the column chosen.
  function sort(root) {
    const t = root.querySelector('table.jobs');
    if (!t) return;
    t.querySelectorAll('th').forEach((th, i) => {
      th.classList.toggle('asc', i === sortCol && sortDir > 0);
      th.classList.toggle('desc', i === sortCol && sortDir < 0);
    });
    if (sortCol < 0) return;
    const body = t.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a.cells[sortCol]), y = key(b.cells[sortCol]);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
    body.append(...rows);
  }
  // Makes `a` look like `b`, touching only what differs, so that a button under the
  // pointer stays the same button while the numbers around it change.
  function morph(a, b) {
    if (a.isEqualNode(b)) return;
    if (a.nodeType !== 1 || a.nodeName !== b.nodeName || a.childNodes.length !== b.childNodes.length ||
        a.childNodes.length === 0) {
      a.replaceWith(b);
      return;
    }
    for (const at of Array.from(a.attributes)) if (!b.hasAttribute(at.name)) a.removeAttribute(at.name);
    for (const at of Array.from(b.attributes)) if (a.getAttribute(at.name) !== at.value) a.setAttribute(at.name, at.value);
    const olds = Array.from(a.childNodes), news = Array.from(b.childNodes);
    for (let i = 0; i < olds.length; i++) morph(olds[i], news[i]);
  }
  live.addEventListener('click', (e) => {
    const th = e.target.closest('th[data-sort]');
    if (!th) return;
    if (sortCol === th.cellIndex) sortDir = -sortDir; else { sortCol = th.cellIndex; sortDir = 1; }
    sort(live);
  });

  function toast(text, bad) {
    const box = document.getElementById('toast');
    const d = document.createElement('div');
    d.textContent = text;
    if (bad) d.className = 'bad';
    box.append(d);
    setTimeout(() => d.remove(), 5000);
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const r = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
      if (r.status === 401) { location.reload(); return; }
      if (!r.ok) throw new Error(r.statusText);
      const next = document.createElement('div');
      next.innerHTML = await r.text();
      sort(next);
      const olds = Array.from(live.childNodes), news = Array.from(next.childNodes);
      if (olds.length !== news.length) live.replaceChildren(...news);
      else for (let i = 0; i < olds.length; i++) morph(olds[i], news[i]);
      document.body.classList.remove('stale');
    } catch (e) {
      document.body.classList.add('stale');
    } finally {
      busy = false;
    }
  }
  setInterval(() => { if (!document.hidden) refresh(); }, 2000);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });

  document.addEventListener('submit', async (e) => {
    const f = e.target;
    if (!f.classList.contains('acts')) return;
    e.preventDefault();
    const data = new URLSearchParams(new FormData(f));
    if (e.submitter && e.submitter.name) data.set(e.submitter.name, e.submitter.value);
    f.querySelectorAll('button').forEach((b) => { b.disabled = true; });
    try {
      const r = await fetch(f.getAttribute('action'), {
        method: 'POST', body: data, credentials: 'same-origin',
        headers: { accept: 'application/json' },
      });
      let answer = {};
      try { answer = await r.json(); } catch (_) { answer = { message: r.statusText }; }
      toast(answer.message || r.statusText, !r.ok);
    } catch (err) {
      toast('guardian did not answer: ' + err.message, true);
    }
    while (busy) await new Promise((ok) => setTimeout(ok, 50));
    await refresh();
  });

  const log = document.getElementById('log');
  const state = document.getElementById('logstate');
  async function follow() {
    try {
      const r = await fetch(log.dataset.src, { credentials: 'same-origin' });
      if (!r.ok || !r.body) throw new Error(r.statusText);
      log.textContent = '';
      if (state) state.textContent = 'following';
      let first = true;
      const reader = r.body.getReader();
      const text = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
        log.append(text.decode(value, { stream: true }));
        if (log.childNodes.length > 400) log.normalize();
        if (log.textContent.length > 400000) log.textContent = log.textContent.slice(-300000);
        if (atEnd || first) log.scrollTop = log.scrollHeight;
        first = false;
      }
    } catch (e) {
      // Asked again below.
    }
    if (state) state.textContent = 'reconnecting';
    setTimeout(follow, 3000);
  }
  if (log) follow();
})();
