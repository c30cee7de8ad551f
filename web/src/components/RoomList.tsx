import type { RoomState } from '../client.ts';
import { Icon } from './Icon.tsx';

interface Props {
  rooms: readonly RoomState[];
  activeRoom: string | null;
  onSelect: (room: string) => void;
  onLeave: (room: string) => void;
}

export function RoomList({ rooms, activeRoom, onSelect, onLeave }: Props) {
  return (
    <nav className="room-nav" aria-labelledby="rooms-heading">
      <h2 id="rooms-heading" className="section-title">
        Rooms <span className="count">{rooms.length}</span>
      </h2>
      {rooms.length === 0 ? (
        <p className="room-empty">No rooms yet. Join one above.</p>
      ) : (
        <ul className="room-list" data-testid="room-list">
          {rooms.map((room) => {
            const active = room.id === activeRoom;
            return (
              <li
                key={room.id}
                className={`room-item${active ? ' is-active' : ''}${room.unread > 0 ? ' has-unread' : ''}`}
                data-testid="room-item"
                data-room={room.id}
                data-active={active}
                data-status={room.status}
                data-private={room.key !== null}
              >
                <button
                  type="button"
                  className="room-button"
                  onClick={() => {
                    onSelect(room.id);
                  }}
                  aria-current={active ? 'page' : undefined}
                >
                  <Icon name={room.key === null ? 'hash' : 'lock'} size={16} />
                  {room.key !== null && <span className="sr-only">Private room </span>}
                  <span className="room-name">{room.id}</span>
                  {room.status === 'joining' && <span className="room-joining" aria-label="joining" />}
                  {room.unread > 0 && (
                    <span className="unread-badge" data-testid="unread-badge" aria-label={`${room.unread} unread`}>
                      {room.unread > 99 ? '99+' : room.unread}
                    </span>
                  )}
                </button>
                <button
                  type="button"
                  className="icon-button room-leave"
                  data-testid="leave-room"
                  onClick={() => {
                    onLeave(room.id);
                  }}
                  aria-label={`Leave #${room.id}`}
                  title={`Leave #${room.id}`}
                >
                  <Icon name="close" size={14} />
                </button>
              </li>
            );
          })}
        </ul>
      )}
    </nav>
  );
}
