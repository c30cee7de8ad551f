import { durationWords } from '../expiry.ts';
import { Icon } from './Icon.tsx';
import { LogoMark } from './Logo.tsx';

interface Props {
  ttlMs: number | null;
  /** The gateway carries only encrypted rooms. */
  privateOnly: boolean;
  /** This page can encrypt. */
  encryption: boolean;
  onJoin: (room: string) => void;
  onNewPrivateRoom: () => void;
}

const SUGGESTED = ['lobby', 'random', 'help'];

/** Shown when no room is open. */
export function EmptyState({ ttlMs, privateOnly, encryption, onJoin, onNewPrivateRoom }: Props) {
  const ttl = ttlMs === null ? 'a few minutes' : durationWords(ttlMs);
  const newPrivate = (
    <button
      type="button"
      className={`btn ${privateOnly ? 'btn-primary' : 'btn-secondary'}`}
      onClick={onNewPrivateRoom}
      disabled={!encryption}
    >
      <Icon name="lock" size={16} />
      New private room
    </button>
  );
  return (
    <div className="empty-state" data-testid="empty-state">
      <LogoMark size={56} />
      <h2>{privateOnly ? 'Start a private room' : 'Pick a room to start whispering'}</h2>
      {privateOnly ? (
        <p>
          This server carries only end-to-end encrypted rooms. A private room’s link holds its key: share it, and only
          those who have it can read along. Every message fades away {ttl} after it is sent.
        </p>
      ) : (
        <p>
          Rooms appear the moment someone joins them — type any name on the left, or try one of these. Share the
          address bar link and others land in the same room. A private room is end-to-end encrypted: only people with
          its link can read it. Every message fades away {ttl} after it is sent.
        </p>
      )}
      {!encryption && (
        <p className="empty-note">Private rooms need a secure connection (HTTPS) in this browser.</p>
      )}
      <div className="quick-rooms">
        {!privateOnly &&
          SUGGESTED.map((room) => (
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
        {newPrivate}
      </div>
    </div>
  );
}
