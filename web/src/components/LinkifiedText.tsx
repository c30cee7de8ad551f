import { linkify } from '../linkify.ts';

/** Message text as React text nodes, with http(s) links as safe anchors. */
export function LinkifiedText({ text }: { text: string }) {
  return (
    <>
      {linkify(text).map((seg, i) =>
        seg.kind === 'text' ? (
          seg.text
        ) : (
          <a key={i} href={seg.href} target="_blank" rel="noopener noreferrer nofollow">
            {seg.text}
          </a>
        ),
      )}
    </>
  );
}
