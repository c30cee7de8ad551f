import type { CSSProperties } from 'react';

/** A round badge with the initial of a name, in a colour derived from it. */
export function hueFor(name: string): number {
  let h = 0;
  for (const ch of name) h = (h * 31 + (ch.codePointAt(0) ?? 0)) % 360;
  return h;
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** The first user-perceived character (so an emoji or flag stays whole). */
export function initialOf(name: string): string {
  const first = graphemes.segment(name.trim())[Symbol.iterator]().next();
  return first.done === true ? '?' : first.value.segment.toLocaleUpperCase();
}

interface Props {
  name: string;
  size?: 'sm' | 'md';
}

export function Avatar({ name, size = 'md' }: Props) {
  return (
    <span className={`avatar avatar-${size}`} style={{ '--avatar-hue': hueFor(name) } as CSSProperties} aria-hidden="true">
      {initialOf(name)}
    </span>
  );
}
