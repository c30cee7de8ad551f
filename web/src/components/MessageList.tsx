import { useLayoutEffect, useRef, useState } from 'react';
import type { ChatMessage, OutgoingMessage, RoomState } from '../client.ts';
import { durationWords, isExpired } from '../expiry.ts';
import { useNow } from '../useNow.ts';
import { Icon } from './Icon.tsx';
import { MessageItem } from './MessageItem.tsx';
import { OutgoingItem } from './OutgoingItem.tsx';

interface Props {
  room: RoomState;
  online: boolean;
  offset: number;
  ttlMs: number | null;
  onRetry: (cid: string) => void;
  onEdit: (message: OutgoingMessage) => void;
  onDiscard: (cid: string) => void;
}

/** Messages by the same person closer together than this share one header. */
const GROUP_GAP_MS = 3 * 60_000;
/** Closer than this to the bottom counts as "reading the latest". */
const STICK_PX = 80;

function groupedWithPrevious(prev: ChatMessage | undefined, m: ChatMessage): boolean {
  return prev?.user.id === m.user.id && m.ts - prev.ts < GROUP_GAP_MS && m.ts >= prev.ts;
}

export function MessageList({ room, online, offset, ttlMs, onRetry, onEdit, onDiscard }: Props) {
  const now = useNow(1000);
  const scroller = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const [atBottom, setAtBottom] = useState(true);

  // Expired messages disappear on the dot, whether or not the store has pruned them yet.
  const visible = room.messages.filter((m) => !isExpired(m.expires_at, now, offset));
  const outbox = room.outbox.filter((o) => o.deadline > now);
  const lastId = outbox.at(-1)?.cid ?? visible.at(-1)?.id;

  // The list is keyed by room, so it opens at the newest message; after
  // that, new messages keep the view at the bottom if the reader was there.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el !== null && stick.current) el.scrollTop = el.scrollHeight;
  }, [lastId]);

  const onScroll = () => {
    const el = scroller.current;
    if (el === null) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < STICK_PX;
    stick.current = bottom;
    setAtBottom(bottom);
  };

  const jump = () => {
    const el = scroller.current;
    if (el === null) return;
    el.scrollTo({ top: el.scrollHeight, behavior: 'smooth' });
  };

  const ttl = ttlMs === null ? 'a few minutes' : durationWords(ttlMs);

  return (
    <div className="messages-wrap">
      <div
        className="messages"
        ref={scroller}
        onScroll={onScroll}
        tabIndex={0}
        role="region"
        aria-label={`Messages in #${room.id}`}
      >
        {visible.length === 0 && outbox.length === 0 ? (
          <div className="room-quiet" data-testid="room-empty">
            {room.status === 'joining' ? (
              <p>{online ? `Joining #${room.id}…` : `#${room.id} opens once the connection is back.`}</p>
            ) : (
              <>
                <p className="room-quiet-title">It’s quiet in #{room.id}.</p>
                <p>
                  {room.key !== null && 'Only people with this room’s link can read what is said here. '}
                  Say something. It will fade away {ttl} after you send it.
                </p>
              </>
            )}
          </div>
        ) : null}
        <ol className="message-list" data-testid="message-list" data-room={room.id}>
          {visible.map((m, i) => (
            <MessageItem
              key={m.id}
              message={m}
              privateRoom={room.key !== null}
              grouped={groupedWithPrevious(visible[i - 1], m)}
              now={now}
              offset={offset}
            />
          ))}
        </ol>
        {outbox.length > 0 && (
          <ol className="message-list outbox" data-testid="outbox" aria-label="Your messages on their way">
            {outbox.map((o) => (
              <OutgoingItem key={o.cid} message={o} onRetry={onRetry} onEdit={onEdit} onDiscard={onDiscard} />
            ))}
          </ol>
        )}
      </div>
      {!atBottom && (
        <button type="button" className="jump-latest btn btn-secondary btn-sm" onClick={jump}>
          <Icon name="arrowDown" size={16} />
          Latest messages
        </button>
      )}
    </div>
  );
}
