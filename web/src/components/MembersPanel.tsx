import type { Member } from '../protocol.ts';
import { Avatar } from './Avatar.tsx';
import { Icon } from './Icon.tsx';

interface Props {
  id: string;
  room: string;
  members: readonly Member[];
  selfId: string | null;
  open: boolean;
  /** The list is from before a reconnect and may be out of date. */
  stale: boolean;
  onClose: () => void;
}

const collator = new Intl.Collator(undefined, { sensitivity: 'base' });

export function MembersPanel({ id, room, members, selfId, open, stale, onClose }: Props) {
  const sorted = [...members].sort((a, b) => {
    if (a.id === selfId) return -1;
    if (b.id === selfId) return 1;
    return collator.compare(a.name, b.name);
  });
  return (
    <aside id={id} className={`members${open ? ' is-open' : ''}`} aria-labelledby={`${id}-title`}>
      <div className="members-head">
        <h2 id={`${id}-title`} className="section-title">
          In #{room} <span className="count">{members.length}</span>
        </h2>
        <button type="button" className="icon-button members-close" onClick={onClose} aria-label="Close members">
          <Icon name="close" />
        </button>
      </div>
      {members.length === 0 && <p className="members-empty">Who is here shows up once the room is joined.</p>}
      <ul className={`member-list${stale ? ' is-stale' : ''}`} data-testid="member-list" aria-busy={stale}>
        {sorted.map((m) => (
          <li key={m.id} className="member" data-testid="member" data-id={m.id}>
            <Avatar name={m.name} size="sm" />
            <bdi className="member-name">{m.name}</bdi>
            {m.id === selfId && <span className="you-tag">you</span>}
          </li>
        ))}
      </ul>
    </aside>
  );
}
