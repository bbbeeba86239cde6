"""Long-term memory for a chat: every message is stored in a collection, and the messages relevant to what
the user says now are recalled into the next prompt, even from sessions long gone.

    python examples/chat_memory.py

Messages are documents with metadata ``{"user", "session", "role", "turn"}``; recall filters on the user
(never another user's memories) and leaves out the current session (already in the prompt).
"""

from __future__ import annotations

import uuid

import vectorpg


class ChatMemory:
    """A user's chat history in a vectorpg collection."""

    def __init__(self, db: vectorpg.Database, user: str) -> None:
        self.docs = db.collection("chat_memory")
        self.user = user

    def remember(self, session: str, turn: int, role: str, text: str) -> None:
        meta = {"user": self.user, "session": session, "role": role, "turn": turn}
        self.docs.add([text], ids=[f"{self.user}/{session}/{turn}/{role}"], metadata=[meta])

    def recall(self, text: str, *, session: str, k: int = 3) -> list[str]:
        where = {"user": self.user, "session": {"$ne": session}}
        return [f"{h.metadata['role']}: {h.content}" for h in self.docs.search(text, k, where=where)]


def main() -> None:
    db = vectorpg.connect()
    memory = ChatMemory(db, user=f"demo-{uuid.uuid4().hex[:6]}")
    earlier = [
        ("user", "My dog Bruno is a border collie and he hates thunderstorms."),
        ("assistant", "Border collies are sensitive to noise; a quiet den can help Bruno during storms."),
        ("user", "I'm allergic to peanuts, so keep that in mind for recipes."),
        ("user", "We are moving to Lisbon in March."),
    ]
    for turn, (role, text) in enumerate(earlier):
        memory.remember("session-1", turn, role, text)

    now = "There's a storm tonight, any tips for my dog?"
    print(f"user (session 2): {now}")
    print("recalled from earlier sessions:")
    for line in memory.recall(now, session="session-2", k=2):
        print(f"  {line}")
    db.close()


if __name__ == "__main__":
    main()
