import type { RoomState } from '../client.ts';
import type { Member } from '../protocol.ts';
import { durationWords } from '../expiry.ts';
import { THEME_CHOICES, type ThemeChoice } from '../theme.ts';
import { Avatar } from './Avatar.tsx';
import { Icon, type IconName } from './Icon.tsx';
import { JoinRoomForm } from './JoinRoomForm.tsx';
import { Logo } from './Logo.tsx';
import { RoomList } from './RoomList.tsx';

interface Props {
  id: string;
  open: boolean;
  name: string;
  self: Member | null;
  rooms: readonly RoomState[];
  activeRoom: string | null;
  ttlMs: number | null;
  /** The gateway carries only encrypted rooms. */
  privateOnly: boolean;
  /** This page can encrypt. */
  encryption: boolean;
  notifications: { supported: boolean; enabled: boolean; denied: boolean };
  theme: ThemeChoice;
  onJoin: (input: string) => string | null;
  onNewPrivateRoom: () => string | null;
  onSelect: (room: string) => void;
  onLeave: (room: string) => void;
  onClose: () => void;
  onToggleNotifications: (on: boolean) => void;
  onTheme: (theme: ThemeChoice) => void;
  /** Null when the name comes from the sign-in token. */
  onChangeName: (() => void) | null;
}

const THEME_ICON: Record<ThemeChoice, IconName> = { system: 'monitor', light: 'sun', dark: 'moon' };
const THEME_LABEL: Record<ThemeChoice, string> = { system: 'System theme', light: 'Light theme', dark: 'Dark theme' };

export function Sidebar(props: Props) {
  const { notifications, theme } = props;

  const nextTheme = THEME_CHOICES[(THEME_CHOICES.indexOf(theme) + 1) % THEME_CHOICES.length] ?? 'system';
  return (
    <aside id={props.id} className={`sidebar${props.open ? ' is-open' : ''}`} aria-label="Rooms and settings">
      <div className="sidebar-head">
        <Logo />
        <button type="button" className="icon-button drawer-close" onClick={props.onClose} aria-label="Close menu">
          <Icon name="close" />
        </button>
      </div>
      <p className="sidebar-tagline">
        <Icon name="clock" size={14} />
        {props.ttlMs === null ? 'Messages fade after a few minutes' : `Messages fade after ${durationWords(props.ttlMs)}`}
      </p>
      <JoinRoomForm
        privateOnly={props.privateOnly}
        encryption={props.encryption}
        onJoin={props.onJoin}
        onNewPrivateRoom={props.onNewPrivateRoom}
      />
      <RoomList rooms={props.rooms} activeRoom={props.activeRoom} onSelect={props.onSelect} onLeave={props.onLeave} />
      <div className="sidebar-foot">
        <div className="me">
          <Avatar name={props.self?.name ?? props.name} size="sm" />
          <div className="me-text">
            <bdi className="me-name" data-testid="self-name">
              {props.self?.name ?? props.name}
            </bdi>
            {props.onChangeName !== null && (
              <button type="button" className="link-button" onClick={props.onChangeName} data-testid="change-name">
                Change name
              </button>
            )}
          </div>
        </div>
        <div className="foot-actions">
          {notifications.supported && (
            <button
              type="button"
              className={`icon-button${notifications.enabled ? ' is-on' : ''}`}
              data-testid="notifications-toggle"
              aria-pressed={notifications.enabled}
              aria-label="Desktop notifications"
              title={
                notifications.denied
                  ? 'Notifications are blocked in your browser settings'
                  : notifications.enabled
                    ? 'Desktop notifications: on'
                    : 'Desktop notifications: off'
              }
              disabled={notifications.denied && !notifications.enabled}
              onClick={() => {
                props.onToggleNotifications(!notifications.enabled);
              }}
            >
              <Icon name={notifications.enabled ? 'bell' : 'bellOff'} />
            </button>
          )}
          <button
            type="button"
            className="icon-button"
            data-testid="theme-toggle"
            aria-label={`${THEME_LABEL[theme]} (switch to ${THEME_LABEL[nextTheme].toLowerCase()})`}
            title={`${THEME_LABEL[theme]} — click for ${THEME_LABEL[nextTheme].toLowerCase()}`}
            onClick={() => {
              props.onTheme(nextTheme);
            }}
          >
            <Icon name={THEME_ICON[theme]} />
          </button>
        </div>
      </div>
    </aside>
  );
}
