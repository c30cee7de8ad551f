import { useState } from 'react';
import { ChatScreen } from './components/ChatScreen.tsx';
import { NameGate } from './components/NameGate.tsx';
import { storage } from './storage.ts';

/** Asks for a name once (remembered), then opens the chat. */
export function App() {
  const [name, setName] = useState<string | null>(storage.name);
  const [editing, setEditing] = useState(false);

  if (name === null || editing) {
    return (
      <NameGate
        initialName={name ?? ''}
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
      key={name}
      name={name}
      onChangeName={() => {
        setEditing(true);
      }}
    />
  );
}
