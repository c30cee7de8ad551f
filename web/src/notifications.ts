/** Desktop notifications (opt-in), wrapped so the rest never touches the API. */

export function notificationsSupported(): boolean {
  return typeof window !== 'undefined' && 'Notification' in window;
}

export function notificationPermission(): NotificationPermission | 'unsupported' {
  return notificationsSupported() ? Notification.permission : 'unsupported';
}

/** Asks for permission if needed; true when notifications may be shown. */
export async function ensureNotificationPermission(): Promise<boolean> {
  if (!notificationsSupported()) return false;
  if (Notification.permission === 'granted') return true;
  if (Notification.permission === 'denied') return false;
  return (await Notification.requestPermission()) === 'granted';
}

/** Shows a notification; returns it (to close it later), or null when none could be shown. */
export function showNotification(title: string, body: string, tag: string, onClick: () => void): Notification | null {
  if (notificationPermission() !== 'granted') return null;
  try {
    const n = new Notification(title, { body, tag });
    n.onclick = () => {
      window.focus();
      onClick();
      n.close();
    };
    return n;
  } catch {
    // Some platforms (Android Chrome) only allow notifications from a service worker.
    return null;
  }
}
