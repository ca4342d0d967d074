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
  function sort() {
    const t = live.querySelector('table.jobs');
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
  live.addEventListener('click', (e) => {
    const th = e.target.closest('th[data-sort]');
    if (!th) return;
    if (sortCol === th.cellIndex) sortDir = -sortDir; else { sortCol = th.cellIndex; sortDir = 1; }
    sort();
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
      live.innerHTML = await r.text();
      sort();
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
      const r = await fetch(f.action, {
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
      const reader = r.body.getReader();
      const text = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
        log.append(text.decode(value, { stream: true }));
        if (log.childNodes.length > 400) log.normalize();
        if (log.textContent.length > 400000) log.textContent = log.textContent.slice(-300000);
        if (atEnd) log.scrollTop = log.scrollHeight;
      }
    } catch (e) {
      // Asked again below.
    }
    if (state) state.textContent = 'reconnecting';
    setTimeout(follow, 3000);
  }
  if (log) follow();
})();
