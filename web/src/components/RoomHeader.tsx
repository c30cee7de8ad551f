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
  /** The open private room's key is kept in this browser. */
  pinned: boolean;
  onPin: (room: string, pinned: boolean) => void;
  onMenu: () => void;
  onMembers: () => void;
  onLeave: (room: string) => void;
}

export function RoomHeader(props: Props) {
  const { state, room } = props;
  const [copied, setCopied] = useState(false);

  const copy = async (roomId: string, key: string | null) => {
    const link = shareLink(window.location.origin, window.location.pathname, roomId, key);
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
            <h1 data-testid="room-title" data-private={room.key !== null}>
              {room.key === null ? (
                <span className="hash" aria-hidden="true">
                  #
                </span>
              ) : (
                <span className="hash room-lock" title="Private room: end-to-end encrypted">
                  <Icon name="lock" size={16} />
                  <span className="sr-only">Private room </span>
                </span>
              )}
              {room.id}
            </h1>
            <span className="room-sub">
              {room.key !== null && 'end-to-end encrypted · '}
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
              onClick={() => void copy(room.id, room.key)}
              aria-label={copied ? 'Link copied' : `Copy link to #${room.id}`}
              title={
                copied
                  ? 'Link copied'
                  : room.key === null
                    ? 'Copy link to this room'
                    : 'Copy this room’s link: it holds the key, so share it only with people who may read along'
              }
              data-testid="copy-link"
            >
              <Icon name="link" />
              {copied && <span className="copied-tip">Copied</span>}
            </button>
            {room.key !== null && (
              <button
                type="button"
                className={`icon-button pin-button${props.pinned ? ' is-on' : ''}`}
                onClick={() => {
                  props.onPin(room.id, !props.pinned);
                }}
                aria-pressed={props.pinned}
                aria-label="Keep this private room in this browser"
                title={
                  props.pinned
                    ? 'Pinned: this browser keeps the room and its key. Click to forget them when the page closes.'
                    : 'Not pinned: the key is forgotten when the page closes. Click to keep the room and its key in this browser.'
                }
                data-testid="pin-room"
              >
                <Icon name="pin" />
              </button>
            )}
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
