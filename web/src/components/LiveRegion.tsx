import type { Announcement } from '../traces.ts';

/**
 * Screen readers hear new messages from here (politely, without stealing
 * focus); each announcement leaves when its message expires.
 */
export function LiveRegion({ announcements }: { announcements: readonly Announcement[] }) {
  return (
    <div className="sr-only" aria-live="polite" aria-relevant="additions" data-testid="live-region">
      {announcements.map((a) => (
        <p key={a.id}>{a.text}</p>
      ))}
    </div>
  );
}
