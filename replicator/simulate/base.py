"""The simulator skeleton shared by the shop and the ERP: one connection, one transaction per action,
weighted random steps at a steady rate, pause/resume from another thread.

A simulator plays the *application* (PrestaShop, Odoo), not the replicator: it uses ordinary sessions and
ordinary transactions on its own database only, so everything it writes is a genuine user change that capture
must see and replicate.
"""

from __future__ import annotations

import abc
import collections
import random
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

# Attempts of one action when the database reports a deadlock or a lock-wait timeout.
_ATTEMPTS = 5

C = TypeVar("C")
T = TypeVar("T")

# One step action: its name, its weight, and a callable that runs it (one transaction) and says whether it did
# anything.
StepAction = tuple[str, float, Callable[[], bool]]


class Simulator(abc.ABC, Generic[C]):
    """Drives one application's database like its users would.

    `connect` returns a new DB-API connection (PyMySQL for the shop, psycopg 3 for the ERP); the simulator opens
    one lazily, and opens a new one after the old one broke. Every action is one transaction: committed at the
    end, rolled back on error and the error re-raised. A deadlock or lock-wait timeout (or a connection lost
    before the commit was sent) is retried once on a fresh transaction, then raised.

    `counts` counts the actions done, `failures` the actions that found nothing to do. Both public action
    methods and `step()` update them.
    """

    def __init__(self, connect: Callable[[], C], *, seed: int = 0, rate: float = 10.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._connect = connect
        self.rate = rate
        self.random = random.Random(seed)
        self.counts: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self._conn: C | None = None
        # Re-entrant: a step runs a public action, and close() from another thread waits for the running step.
        self._lock = threading.RLock()
        self._running = threading.Event()
        self._running.set()

    # ------------------------------------------------------------------------------------------------------
    # Driving
    # ------------------------------------------------------------------------------------------------------

    def step(self) -> str | None:
        """Run one weighted random action and return its name.

        When the drawn action finds nothing to do (no unpaid order to pay, ...), it counts as a failure and
        another one is drawn among the rest; None when none of them could do anything.
        """
        with self._lock:
            candidates = list(self._step_actions())
            while candidates:
                weights = [weight for _, weight, _ in candidates]
                index = self.random.choices(range(len(candidates)), weights=weights)[0]
                name, _, run = candidates.pop(index)
                if run():
                    return name
            return None

    def run(self, stop: threading.Event) -> None:
        """Call step() `rate` times per second until `stop` is set; while paused, just wait.

        Steps are paced on a fixed schedule; when a step overruns its slot the schedule restarts from now
        instead of bursting to catch up. Errors from a step are raised (the caller decides what a failure means).
        """
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not stop.is_set():
            if self.paused:
                stop.wait(min(interval, 0.05))  # notice resume() promptly even at a slow rate
                next_at = time.monotonic()
                continue
            self.step()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_at = time.monotonic()

    def pause(self) -> None:
        """Stop stepping in run() (the step in progress finishes)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def close(self) -> None:
        """Close the connection (waits for a running action); the next action opens a new one."""
        with self._lock:
            self._drop_connection()

    # ------------------------------------------------------------------------------------------------------
    # For subclasses
    # ------------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _step_actions(self) -> Sequence[StepAction]:
        """The random actions step() draws from, with their weights."""

    @abc.abstractmethod
    def _prepare(self, conn: C) -> None:
        """Make a fresh connection transactional (autocommit off) and set session defaults."""

    @abc.abstractmethod
    def _commit(self, conn: C) -> None: ...

    @abc.abstractmethod
    def _rollback(self, conn: C) -> None:
        """Roll back; may raise the driver's error when the connection is dead."""

    @abc.abstractmethod
    def _close_connection(self, conn: C) -> None:
        """Close without raising."""

    @abc.abstractmethod
    def _is_usable(self, conn: C) -> bool:
        """False once the connection is closed or broken."""

    @abc.abstractmethod
    def _is_transient(self, exc: BaseException) -> bool:
        """A deadlock, lock-wait timeout or serialization failure: the transaction was rolled back and may be
        run again."""

    @abc.abstractmethod
    def _is_driver_error(self, exc: BaseException) -> bool:
        """An error of the database driver (as opposed to a bug or an interrupt)."""

    def _action(self, name: str, body: Callable[[C], T]) -> T:
        """Run one action as one transaction and record it: done when the result is truthy, else a failure."""
        with self._lock:
            result = self._transact(body)
        if result:
            self.counts[name] += 1
        else:
            self.failures[name] += 1
        return result

    def _transact(self, body: Callable[[C], T]) -> T:
        """Run `body` in one transaction on the simulator's connection: commit, or roll back and re-raise."""
        for attempt in range(1, _ATTEMPTS + 1):
            conn = self._connection()
            committing = False
            try:
                result = body(conn)
                committing = True
                self._commit(conn)
                return result
            except BaseException as exc:
                self._abort(conn)
                if attempt < _ATTEMPTS and self._may_retry(exc, conn, committing=committing, attempt=attempt):
                    # Busy rows (two shoppers and the replicator on one product's stock): back off a little,
                    # at random, as an application server's retry would.
                    time.sleep(random.uniform(0.005, 0.05) * attempt)  # not self.random: replays stay seeded
                    continue
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _may_retry(self, exc: BaseException, conn: C, *, committing: bool, attempt: int) -> bool:
        if self._is_transient(exc):
            return True
        if attempt > 1:
            return False
        # A connection that died before the COMMIT was sent rolled the transaction back on the server: running
        # it again on a new connection is safe. After the COMMIT was sent, its outcome is unknown: raise.
        # (_abort has already dropped a broken connection, so it is no longer self._conn.)
        return self._is_driver_error(exc) and not committing and conn is not self._conn

    def _abort(self, conn: C) -> None:
        """Roll back after an error; forget the connection when it is broken, so the next action reconnects."""
        try:
            self._rollback(conn)
        except BaseException as exc:
            if not self._is_driver_error(exc):
                raise
            # The connection is gone (the server rolled the transaction back); the original error matters.
        if not self._is_usable(conn):
            self._drop_connection()

    def _connection(self) -> C:
        if self._conn is None:
            conn = self._connect()
            self._prepare(conn)
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._close_connection(conn)


# ----------------------------------------------------------------------------------------------------------
# Realistic people and places, shared by both simulators (keyed by ISO 3166 alpha-2 code)
# ----------------------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Alice", "Bruno", "Carmen", "Davide", "Emma", "Lucas", "Sofia", "Noah", "Mila", "Hugo", "Lena", "Mateo",
    "Chloé", "Jonas", "Giulia", "Liam", "Inès", "Felix", "Olivia", "Marco", "Zoé", "Pablo", "Hanna", "Thomas",
    "Élodie", "Sven", "Nora", "Luca", "Anouk", "James", "Lucía", "Pieter", "Amélie", "Jakob", "Clara", "Ethan",
)  # fmt: skip

LAST_NAMES = (
    "Martin", "Keller", "García", "Rossi", "Peeters", "Bernard", "Müller", "López", "Bianchi", "Janssens",
    "Dubois", "Schmidt", "Fernández", "Romano", "De Vries", "Smith", "Jones", "Moreau", "Fischer", "Martínez",
    "Ricci", "Claes", "Laurent", "Weber", "Sánchez", "Colombo", "Jansen", "Taylor", "Brown", "Lefèvre", "Wagner",
    "Navarro", "Greco", "Willems", "Bakker", "Johnson",
)  # fmt: skip

COMPANY_WORDS = (
    "Atelier", "Studio", "Nordic", "Blue", "Green", "Alpine", "Coastal", "Urban", "Craft", "Bright", "Oak", "Iron",
)  # fmt: skip
COMPANY_SUFFIXES = ("Design", "Trading", "Supplies", "Works", "Interiors", "Goods", "Consulting", "Home")

EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "post.example.org")


@dataclass(frozen=True)
class Locale:
    """Addresses and phone numbers of one country. `#` in a phone pattern is a random digit."""

    cities: tuple[tuple[str, str], ...]  # (city, postcode)
    streets: tuple[str, ...]  # "{n}" is the house number
    phone: str
    mobile: str


LOCALES: dict[str, Locale] = {
    "FR": Locale(
        cities=(("Paris", "75011"), ("Lyon", "69003"), ("Marseille", "13006"), ("Toulouse", "31000"),
                ("Nantes", "44000"), ("Bordeaux", "33000"), ("Lille", "59000")),
        streets=("{n} Rue de la République", "{n} Avenue Jean Jaurès", "{n} Boulevard Voltaire", "{n} Rue Victor Hugo",
                 "{n} Place du Marché", "{n} Rue des Lilas"),
        phone="+33 # ## ## ## ##", mobile="+33 6 ## ## ## ##",
    ),
    "DE": Locale(
        cities=(("Berlin", "10115"), ("München", "80331"), ("Hamburg", "20095"), ("Köln", "50667"),
                ("Frankfurt am Main", "60311"), ("Leipzig", "04109")),
        streets=("Hauptstraße {n}", "Bahnhofstraße {n}", "Gartenweg {n}", "Schillerstraße {n}", "Lindenallee {n}"),
        phone="+49 ## #### ####", mobile="+49 15# #######",
    ),
    "BE": Locale(
        cities=(("Bruxelles", "1000"), ("Antwerpen", "2000"), ("Gent", "9000"), ("Liège", "4000"),
                ("Namur", "5000"), ("Leuven", "3000")),
        streets=("Rue Neuve {n}", "Kerkstraat {n}", "Avenue Louise {n}", "Stationsstraat {n}", "Rue du Marché {n}"),
        phone="+32 # ### ## ##", mobile="+32 47# ## ## ##",
    ),
    "ES": Locale(
        cities=(("Madrid", "28013"), ("Barcelona", "08002"), ("Valencia", "46002"), ("Sevilla", "41004"),
                ("Bilbao", "48001"), ("Málaga", "29015")),
        streets=("Calle Mayor {n}", "Avenida de la Constitución {n}", "Calle del Sol {n}", "Paseo de Gracia {n}",
                 "Calle de Alcalá {n}"),
        phone="+34 9## ## ## ##", mobile="+34 6## ### ###",
    ),
    "IT": Locale(
        cities=(("Roma", "00184"), ("Milano", "20121"), ("Torino", "10121"), ("Bologna", "40121"),
                ("Firenze", "50122"), ("Napoli", "80133")),
        streets=("Via Roma {n}", "Via Garibaldi {n}", "Corso Italia {n}", "Via Dante {n}", "Piazza della Libertà {n}"),
        phone="+39 0# #### ####", mobile="+39 3## ### ####",
    ),
    "NL": Locale(
        cities=(("Amsterdam", "1012 AB"), ("Rotterdam", "3011 AD"), ("Utrecht", "3511 LX"), ("Den Haag", "2511 CV"),
                ("Eindhoven", "5611 AZ"), ("Groningen", "9711 LM")),
        streets=("Kerkstraat {n}", "Dorpsstraat {n}", "Molenweg {n}", "Prinsengracht {n}", "Stationsplein {n}"),
        phone="+31 ## ### ####", mobile="+31 6 ########",
    ),
    "GB": Locale(
        cities=(("London", "SW1A 1AA"), ("Manchester", "M1 1AE"), ("Bristol", "BS1 4DJ"), ("Leeds", "LS1 4AP"),
                ("Edinburgh", "EH1 1YZ"), ("Oxford", "OX1 2JD")),
        streets=("{n} High Street", "{n} Station Road", "{n} Church Lane", "{n} Victoria Road", "{n} Mill Lane"),
        phone="+44 20 #### ####", mobile="+44 7### ######",
    ),
    "US": Locale(
        cities=(("New York", "10001"), ("San Francisco", "94103"), ("Chicago", "60601"), ("Austin", "78701"),
                ("Seattle", "98101"), ("Boston", "02108")),
        streets=("{n} Main Street", "{n} Oak Avenue", "{n} Maple Drive", "{n} Park Avenue", "{n} Pine Street"),
        phone="+1 ### ### ####", mobile="+1 ### ### ####",
    ),
}  # fmt: skip

# For a country the demo has no locale for: plausible, neutral values.
DEFAULT_LOCALE = Locale(
    cities=(("Capital City", "10000"), ("Harbour Town", "20000")),
    streets=("{n} Market Street", "{n} Main Road"),
    phone="+## ### ### ###",
    mobile="+## ### ### ###",
)


def locale_for(iso_code: str) -> Locale:
    return LOCALES.get(iso_code.upper(), DEFAULT_LOCALE)


def ascii_slug(text: str) -> str:
    """'Élodie De Vries' -> 'elodie-de-vries': for e-mail local parts."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "-".join(plain.lower().split())


def digits(rng: random.Random, pattern: str) -> str:
    """Replace every `#` in `pattern` with a random digit."""
    return "".join(str(rng.randrange(10)) if ch == "#" else ch for ch in pattern)


def person_name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def company_name(rng: random.Random) -> str:
    return f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIXES)}"


def email_for(rng: random.Random, firstname: str, lastname: str) -> str:
    """A lower-case address built from the name; the caller makes it unique."""
    return f"{ascii_slug(firstname)}.{ascii_slug(lastname)}@{rng.choice(EMAIL_DOMAINS)}"


def unused_email(rng: random.Random, firstname: str, lastname: str, taken: Callable[[str], bool]) -> str:
    """`email_for` the name, with a number after the name until `taken` does not know the address."""
    email = email_for(rng, firstname, lastname)
    local, domain = email.split("@")
    while taken(email):
        email = f"{local}{rng.randint(2, 9999)}@{domain}"
    return email


@dataclass(frozen=True)
class PostalAddress:
    street: str
    postcode: str
    city: str
    phone: str
    mobile: str


def postal_address(rng: random.Random, iso_code: str) -> PostalAddress:
    locale = locale_for(iso_code)
    city, postcode = rng.choice(locale.cities)
    street = rng.choice(locale.streets).format(n=rng.randint(1, 180))
    return PostalAddress(street, postcode, city, digits(rng, locale.phone), digits(rng, locale.mobile))
