import { useEffect, useState } from 'react';

/** The local clock, re-read every `intervalMs` (aligned to whole ticks). */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout>;
    const tick = () => {
      const t = Date.now();
      setNow(t);
      timer = setTimeout(tick, intervalMs - (t % intervalMs) + 5);
    };
    // Read the clock at once: a hook that just went from a slow interval to
    // a fast one must not show a value that is up to the slow one old.
    timer = setTimeout(tick, 0);
    return () => {
      clearTimeout(timer);
    };
  }, [intervalMs]);
  return now;
}
