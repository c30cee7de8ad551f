import { useState, useSyncExternalStore } from 'react';
import { ChatScreen } from './components/ChatScreen.tsx';
import { NameGate } from './components/NameGate.tsx';
import { describeError } from './errors.ts';
import { storage } from './storage.ts';
import { nameClaim, type PageToken } from './token.ts';

/**
 * Asks for a name once (remembered), then opens the chat. A sign-in token
 * with a `name` claim names the user instead: the gateway takes the name
 * from the token, so there is nothing to ask and nothing to change.
 */
export function App({ pageToken }: { pageToken: PageToken }) {
  const [name, setName] = useState<string | null>(storage.name);
  const [editing, setEditing] = useState(false);
  const token = useSyncExternalStore(pageToken.subscribe, pageToken.current);
  const tokenName = token === null ? null : nameClaim(token);
  const ignoredQueryToken = pageToken.ignoredQueryToken;
  const chatName = tokenName ?? name;

  if (chatName === null || (editing && tokenName === null)) {
    return (
      <NameGate
        initialName={name ?? ''}
        notice={ignoredQueryToken ? describeError('token_in_query') : null}
        onSubmit={(n) => {
          storage.setName(n);
          setName(n);
          setEditing(false);
        }}
      />
    );
  }
  return (
    <ChatScreen
      // A signed-in session keeps its client when the app refreshes the
      // token, whatever name the new token carries (the gateway judges it);
      // without a token a new name is a new session.
      key={tokenName === null ? `name:${chatName}` : 'signed-in'}
      name={chatName}
      auth={{ token, ignoredQueryToken }}
      onChangeName={
        tokenName === null
          ? () => {
              setEditing(true);
            }
          : null
      }
    />
  );
}
