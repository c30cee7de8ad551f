import { describeTimeLeft, formatTimeLeft, urgency } from '../expiry.ts';

interface Props {
  /** Milliseconds left, on the server clock. */
  left: number;
  /** Share of the message's life still ahead, 0…1. */
  life: number;
  expiresAt: number;
}

const R = 6;
const CIRCUMFERENCE = 2 * Math.PI * R;

/** A draining ring and a countdown: how long until the message is gone. */
export function ExpiryIndicator({ left, life, expiresAt }: Props) {
  const level = urgency(left, life);
  return (
    <span
      className={`expiry expiry-${level}`}
      data-testid="message-expiry"
      data-expires-at={expiresAt}
      data-time-left={Math.round(left)}
      title={`Disappears in ${formatTimeLeft(left)}`}
    >
      <svg className="expiry-ring" width="16" height="16" viewBox="0 0 16 16" aria-hidden="true" focusable="false">
        <circle className="expiry-track" cx="8" cy="8" r={R} />
        <circle
          className="expiry-fill"
          cx="8"
          cy="8"
          r={R}
          strokeDasharray={CIRCUMFERENCE}
          strokeDashoffset={CIRCUMFERENCE * (1 - life)}
          transform="rotate(-90 8 8)"
        />
      </svg>
      <span className="expiry-text" aria-hidden="true">
        {formatTimeLeft(left)}
      </span>
      <span className="sr-only">{describeTimeLeft(left)}</span>
    </span>
  );
}
