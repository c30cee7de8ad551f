import { useEffect } from 'react';
import type { Toast } from '../useChat.ts';
import { Icon } from './Icon.tsx';

const SHOW_MS = 8_000;

function ToastItem({ toast, onDismiss }: { toast: Toast; onDismiss: (id: number) => void }) {
  useEffect(() => {
    const timer = setTimeout(() => {
      onDismiss(toast.id);
    }, SHOW_MS);
    return () => {
      clearTimeout(timer);
    };
  }, [toast.id, onDismiss]);

  return (
    <div className="toast" role="alert" data-testid="error-banner" data-code={toast.code}>
      <div className="toast-text">
        <strong>{toast.title}</strong>
        <span>{toast.message}</span>
      </div>
      <button
        type="button"
        className="icon-button toast-close"
        onClick={() => {
          onDismiss(toast.id);
        }}
        aria-label="Dismiss"
      >
        <Icon name="close" size={16} />
      </button>
    </div>
  );
}

/** Errors, in human words, stacked in a corner; each leaves after a while. */
export function Toasts({ toasts, onDismiss }: { toasts: readonly Toast[]; onDismiss: (id: number) => void }) {
  return (
    <div className="toasts" aria-label="Errors">
      {toasts.map((t) => (
        <ToastItem key={t.id} toast={t} onDismiss={onDismiss} />
      ))}
    </div>
  );
}
