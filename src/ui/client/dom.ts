/** A tiny DOM builder: text is always set as text, never parsed as markup. */
export type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener | Partial<CSSStyleDeclaration>>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v as EventListener);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'value' && 'value' in el) (el as HTMLInputElement).value = String(v);
    else if (k === 'checked' && 'checked' in el) (el as HTMLInputElement).checked = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** text with every «marked» part in <mark> (search snippets) */
export function marked(text: string): Node[] {
  const out: Node[] = [];
  const re = /«([^»]*)»/g;
  let at = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > at) out.push(document.createTextNode(text.slice(at, m.index)));
    out.push(h('mark', null, m[1]!));
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(document.createTextNode(text.slice(at)));
  return out;
}

/** text with every case-insensitive occurrence of `needle` in <mark>; counts them in `hits` */
export function highlight(text: string, needle: string, hits: { n: number }): Node[] {
  if (!needle) return [document.createTextNode(text)];
  const out: Node[] = [];
  const low = text.toLowerCase();
  const n = needle.toLowerCase();
  let at = 0;
  for (let i = low.indexOf(n); i >= 0; i = low.indexOf(n, i + n.length)) {
    if (i > at) out.push(document.createTextNode(text.slice(at, i)));
    out.push(h('mark', null, text.slice(i, i + n.length)));
    hits.n++;
    at = i + n.length;
  }
  if (at < text.length) out.push(document.createTextNode(text.slice(at)));
  return out;
}
