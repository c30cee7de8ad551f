import { useCallback, useEffect, useRef, useState, type MouseEvent } from 'react';
import type { OutgoingMessage } from '../client.ts';
import { lifetimeChoices } from '../expiry.ts';
import { applyTheme, loadTheme, type ThemeChoice } from '../theme.ts';
import type { PageAuth } from '../token.ts';
import { useChat } from '../useChat.ts';
import { Composer, COMPOSER_ID } from './Composer.tsx';
import { ConnectionBanner } from './ConnectionBanner.tsx';
import { EmptyState } from './EmptyState.tsx';
import { LiveRegion } from './LiveRegion.tsx';
import { MembersPanel } from './MembersPanel.tsx';
import { MessageList } from './MessageList.tsx';
import { RoomHeader } from './RoomHeader.tsx';
import { Sidebar } from './Sidebar.tsx';
import { Toasts } from './Toasts.tsx';

interface Props {
  name: string;
  /** What the embedding app gave the page to sign in with (gateways with auth on). */
  auth: PageAuth;
  /** Null when the name comes from the token. */
  onChangeName: (() => void) | null;
}

const SIDEBAR_ID = 'sidebar';
const MEMBERS_ID = 'members';

/** The signed-in layout: rooms on the left, the open room in the middle, members on the right. */
export function ChatScreen({ name, auth, onChangeName }: Props) {
  const chat = useChat(name, auth);
  const { state } = chat;
  const [drawerOpen, setDrawerOpen] = useState(false);
  const [membersOpen, setMembersOpen] = useState(false);
  const [drafts, setDrafts] = useState<Record<string, string>>({});
  /** The lifetime picked per room (v1.1 gateways); the gateway's TTL until then. */
  const [lifetimes, setLifetimes] = useState<Record<string, number>>({});
  const [theme, setTheme] = useState<ThemeChoice>(loadTheme);
  const menuButton = useRef<HTMLElement | null>(null);

  const room = state.rooms.find((r) => r.id === state.activeRoom) ?? null;
  const range = state.features.lifetimes;
  const choices = range === null ? null : lifetimeChoices(range.min, range.max);
  const picked = room === null ? undefined : lifetimes[room.id];
  // A choice the gateway no longer offers (another TTL after a reconnect) falls back to its TTL.
  const lifetime =
    range === null ? null : picked !== undefined && choices?.includes(picked) === true ? picked : range.max;
  const unreadElsewhere = state.rooms.reduce((n, r) => (r.id === state.activeRoom ? n : n + r.unread), 0);

  useEffect(() => {
    applyTheme(theme);
  }, [theme]);

  // Escape closes whichever overlay is open (phone and tablet widths).
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== 'Escape') return;
      setDrawerOpen(false);
      setMembersOpen(false);
    };
    window.addEventListener('keydown', onKey);
    return () => {
      window.removeEventListener('keydown', onKey);
    };
  }, []);

  // Opening the drawer moves focus into it; closing it returns focus to the menu button.
  const drawerWasOpen = useRef(false);
  useEffect(() => {
    if (drawerOpen) {
      document.querySelector<HTMLInputElement>(`#${SIDEBAR_ID} input`)?.focus();
    } else if (drawerWasOpen.current) {
      menuButton.current?.focus();
    }
    drawerWasOpen.current = drawerOpen;
  }, [drawerOpen]);

  const openMenu = useCallback(() => {
    menuButton.current = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    setDrawerOpen(true);
  }, []);

  const select = useCallback(
    (id: string) => {
      chat.selectRoom(id);
      setDrawerOpen(false);
    },
    [chat],
  );

  const join = useCallback(
    (input: string) => {
      const problem = chat.joinRoom(input);
      if (problem === null) setDrawerOpen(false);
      return problem;
    },
    [chat],
  );

  const newPrivateRoom = useCallback(() => {
    const problem = chat.newPrivateRoom();
    if (problem === null) setDrawerOpen(false);
    return problem;
  }, [chat]);

  const send = useCallback(
    (roomId: string, text: string, ttlMs: number | null) => {
      const ok = chat.send(roomId, text, ttlMs);
      if (ok) setDrafts((d) => ({ ...d, [roomId]: '' }));
      return ok;
    },
    [chat],
  );

  const edit = useCallback(
    (message: OutgoingMessage) => {
      chat.discard(message.room, message.cid);
      setDrafts((d) => ({ ...d, [message.room]: message.text }));
      document.getElementById(COMPOSER_ID)?.focus();
    },
    [chat],
  );

  const skipToComposer = (e: MouseEvent) => {
    e.preventDefault();
    document.getElementById(COMPOSER_ID)?.focus();
  };

  return (
    <div className={`app${drawerOpen ? ' drawer-open' : ''}${membersOpen ? ' members-open' : ''}`}>
      {room !== null && (
        <a href={`#${COMPOSER_ID}`} className="skip-link" onClick={skipToComposer}>
          Skip to message box
        </a>
      )}
      <Sidebar
        id={SIDEBAR_ID}
        open={drawerOpen}
        name={name}
        self={state.self}
        rooms={state.rooms}
        activeRoom={state.activeRoom}
        ttlMs={state.ttlMs}
        privateOnly={state.features.encryptionRequired}
        encryption={chat.encryption}
        notifications={chat.notifications}
        theme={theme}
        onJoin={join}
        onNewPrivateRoom={newPrivateRoom}
        onSelect={select}
        onLeave={chat.leaveRoom}
        onClose={() => {
          setDrawerOpen(false);
        }}
        onToggleNotifications={(on) => void chat.setNotifications(on)}
        onTheme={setTheme}
        onChangeName={onChangeName}
      />
      <div
        className="backdrop"
        aria-hidden="true"
        onClick={() => {
          setDrawerOpen(false);
          setMembersOpen(false);
        }}
      />
      <main className="main" id="main">
        <RoomHeader
          state={state}
          room={room}
          sidebarId={SIDEBAR_ID}
          membersId={MEMBERS_ID}
          drawerOpen={drawerOpen}
          membersOpen={membersOpen}
          unreadElsewhere={unreadElsewhere}
          pinned={room !== null && chat.pinned.has(room.id)}
          onPin={chat.setPinned}
          onMenu={openMenu}
          onMembers={() => {
            setMembersOpen((o) => !o);
          }}
          onLeave={chat.leaveRoom}
        />
        <ConnectionBanner state={state} onRetry={chat.reconnectNow} onChangeName={onChangeName} />
        {room === null ? (
          <EmptyState
            ttlMs={state.ttlMs}
            privateOnly={state.features.encryptionRequired}
            encryption={chat.encryption}
            onJoin={(r) => void join(r)}
            onNewPrivateRoom={() => void newPrivateRoom()}
          />
        ) : (
          <>
            <MessageList
              key={`list-${room.id}`}
              room={room}
              online={state.status === 'online'}
              offset={state.offset}
              ttlMs={state.ttlMs}
              onRetry={(cid) => {
                chat.retry(room.id, cid);
              }}
              onEdit={edit}
              onDiscard={(cid) => {
                chat.discard(room.id, cid);
              }}
            />
            <Composer
              key={`composer-${room.id}`}
              room={room.id}
              value={drafts[room.id] ?? ''}
              maxBytes={state.limits.max_text_bytes}
              status={state.status}
              encrypted={room.key !== null}
              blockedReason={
                room.key === null && state.features.encryptionRequired
                  ? 'This server carries only end-to-end encrypted rooms: start a private room to chat.'
                  : null
              }
              lifetimes={choices}
              lifetime={lifetime}
              onLifetime={(ms) => {
                setLifetimes((l) => ({ ...l, [room.id]: ms }));
              }}
              onChange={(v) => {
                setDrafts((d) => ({ ...d, [room.id]: v }));
              }}
              onSend={(text) => send(room.id, text, lifetime)}
            />
          </>
        )}
      </main>
      {room !== null && (
        <MembersPanel
          id={MEMBERS_ID}
          room={room.id}
          members={room.members}
          selfId={state.self?.id ?? null}
          open={membersOpen}
          stale={room.status !== 'joined'}
          onClose={() => {
            setMembersOpen(false);
          }}
        />
      )}
      <Toasts toasts={chat.toasts} onDismiss={chat.dismissToast} />
      <LiveRegion announcements={chat.announcements} />
    </div>
  );
}
