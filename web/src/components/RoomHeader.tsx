import { useState } from 'react';
import type { ChatState, RoomState } from '../client.ts';
import { shareLink } from '../route.ts';
import { ConnectionStatus } from './ConnectionStatus.tsx';
import { Icon } from './Icon.tsx';

interface Props {
  state: ChatState;
  room: RoomState | null;
  sidebarId: string;
  membersId: string;
  drawerOpen: boolean;
  membersOpen: boolean;
  unreadElsewhere: number;
  onMenu: () => void;
  onMembers: () => void;
  onLeave: (room: string) => void;
}

export function RoomHeader(props: Props) {
  const { state, room } = props;
  const [copied, setCopied] = useState(false);

  const copy = async (roomId: string) => {
    const link = shareLink(window.location.origin, window.location.pathname, roomId);
    try {
      await navigator.clipboard.writeText(link);
      setCopied(true);
      setTimeout(() => {
        setCopied(false);
      }, 2000);
    } catch {
      window.prompt('Copy this link:', link);
    }
  };

  return (
    <header className="room-header">
      <button
        type="button"
        className="icon-button menu-button"
        onClick={props.onMenu}
        aria-label={props.unreadElsewhere > 0 ? `Rooms (${props.unreadElsewhere} unread)` : 'Rooms'}
        aria-expanded={props.drawerOpen}
        aria-controls={props.sidebarId}
        data-testid="menu-button"
      >
        <Icon name="menu" />
        {props.unreadElsewhere > 0 && <span className="menu-dot" aria-hidden="true" />}
      </button>
      <div className="room-title">
        {room === null ? (
          <h1>WhisperRooms</h1>
        ) : (
          <>
            <h1 data-testid="room-title">
              <span className="hash" aria-hidden="true">
                #
              </span>
              {room.id}
            </h1>
            <span className="room-sub">
              {room.status === 'joining'
                ? 'joining…'
                : `${room.members.length} ${room.members.length === 1 ? 'member' : 'members'}`}
            </span>
          </>
        )}
      </div>
      <div className="header-actions">
        <ConnectionStatus state={state} />
        {room !== null && (
          <>
            <button
              type="button"
              className="icon-button copy-link"
              onClick={() => void copy(room.id)}
              aria-label={copied ? 'Link copied' : `Copy link to #${room.id}`}
              title={copied ? 'Link copied' : 'Copy link to this room'}
              data-testid="copy-link"
            >
              <Icon name="link" />
              {copied && <span className="copied-tip">Copied</span>}
            </button>
            <button
              type="button"
              className="icon-button members-button"
              onClick={props.onMembers}
              aria-label={`Members (${room.members.length})`}
              aria-expanded={props.membersOpen}
              aria-controls={props.membersId}
              data-testid="members-toggle"
            >
              <Icon name="users" />
              <span className="members-count">{room.members.length}</span>
            </button>
            <button
              type="button"
              className="btn btn-ghost btn-sm leave-button"
              onClick={() => {
                props.onLeave(room.id);
              }}
              data-testid="leave-button"
            >
              <Icon name="leave" size={16} />
              <span>Leave</span>
            </button>
          </>
        )}
      </div>
    </header>
  );
}
