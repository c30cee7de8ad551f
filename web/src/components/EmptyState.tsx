import { durationWords } from '../expiry.ts';
import { LogoMark } from './Logo.tsx';

interface Props {
  ttlMs: number | null;
  onJoin: (room: string) => void;
}

const SUGGESTED = ['lobby', 'random', 'help'];

/** Shown when no room is open. */
export function EmptyState({ ttlMs, onJoin }: Props) {
  const ttl = ttlMs === null ? 'a few minutes' : durationWords(ttlMs);
  return (
    <div className="empty-state" data-testid="empty-state">
      <LogoMark size={56} />
      <h2>Pick a room to start whispering</h2>
      <p>
        Rooms appear the moment someone joins them — type any name on the left, or try one of these. Share the
        address bar link and others land in the same room. Every message fades away {ttl} after it is sent.
      </p>
      <div className="quick-rooms">
        {SUGGESTED.map((room) => (
          <button
            key={room}
            type="button"
            className="btn btn-secondary"
            onClick={() => {
              onJoin(room);
            }}
          >
            #{room}
          </button>
        ))}
      </div>
    </div>
  );
}
