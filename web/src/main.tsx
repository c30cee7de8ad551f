import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.tsx';
import { applyTheme, loadTheme } from './theme.ts';
import { PageToken } from './token.ts';
import './styles/theme.css';
import './styles/base.css';
import './styles/layout.css';
import './styles/chat.css';

applyTheme(loadTheme());

// The sign-in token leaves the address bar before anything else runs, and
// again whenever the embedding app sets a new fragment.
const pageToken = new PageToken(window);
pageToken.take();
window.addEventListener('hashchange', (e) => {
  pageToken.take(new URL(e.oldURL).hash);
});

const root = document.getElementById('root');
if (root === null) throw new Error('index.html has no #root');
createRoot(root).render(
  <StrictMode>
    <App pageToken={pageToken} />
  </StrictMode>,
);
