"""The citizen commands, in Norwegian and English, and the menu Telegram shows."""

#: command as typed -> the flow's canonical name
CITIZEN_COMMANDS = {
    "start": "start",
    "help": "help",
    "hjelp": "help",
    "crisis": "crisis",
    "krise": "crisis",
    "delete": "delete",
    "slett": "delete",
    "stop": "stop",
    "back": "back",
    "tilbake": "back",
    "mydata": "mydata",
    "minedata": "mydata",
    "fremgang": "progress",
    "progress": "progress",
}

MENU = {
    "nb": [
        ("start", "Start eller fortsett"),
        ("krise", "Hjelpetelefoner nå"),
        ("stop", "Ta en pause"),
        ("fremgang", "Se hvordan det har gått"),
        ("minedata", "Se hva som er lagret om meg"),
        ("slett", "Slett alt om meg"),
        ("tilbake", "Endre forrige svar"),
        ("hjelp", "Hjelp"),
    ],
    "en": [
        ("start", "Start or continue"),
        ("crisis", "Helplines now"),
        ("stop", "Take a break"),
        ("progress", "See how things have gone"),
        ("mydata", "See what is stored about me"),
        ("delete", "Delete everything about me"),
        ("back", "Change previous answer"),
        ("help", "Help"),
    ],
}
