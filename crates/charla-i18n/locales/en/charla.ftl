# charla's English catalogue. Every message here has its Spanish twin in ../es/charla.ftl
# (the crate's tests fail on a message only one of them has).

## The seed's lines (emisor.py / receptor.py) and the send / listen commands

sent = 📤 Sent: [{ $name }] { $text }
received = 📥 Received: [{ $name }] { $text } ({ $time })
connected = ✅ Connected to the broker: { $product } { $version } at { $address }
connect-error = ❌ Cannot connect to the broker: { $reason }
sender-banner = 📤 MESSAGE SENDER
listener-banner = 📥 MESSAGE RECEIVER
ask-name = What is your name?{" "}
hello = Hello { $name }! Type messages ('exit' or 'salir' to quit)
bye = 👋 Bye!
listening = 🔄 Listening for messages... (room '{ $room }', { $mode } mode)
    Press Ctrl+C to quit
exiting = 👋 Exiting... Messages received: { $count }
sent-total = Messages sent: { $count }
reconnecting = ⚠️  Lost the broker ({ $reason }); retrying in { $secs } s
error-line = ❌ Error: { $reason }

## --help: headings, value names and what clap adds to an argument's help

help-usage = Usage:
help-options = Options
help-arguments = Arguments
help-commands = Commands
help-default = {" "}[default: { $value }]
help-env = {" "}[env: { $var }]
help-values = {" "}[possible values: { $values }]
value-OPTIONS = OPTIONS
value-COMMAND = COMMAND
value-URL = URL
value-PATH = PATH
value-N = N
value-LANG = LANG
value-MODE = MODE
value-NAME = NAME
value-ROOM = ROOM
value-ADDR = ADDR
value-MESSAGE = MESSAGE
value-BYTES = BYTES
value-MS = MS
value-SECS = SECS
value-TIME = TIME
value-ID = ID
value-GROUP = GROUP
value-DURATION = DURATION
value-DIR = DIR
value-SIZE = SIZE
value-PORT = PORT
value-PASSWORD = PASSWORD
value-WHEN = WHEN
value-LIMIT = LIMIT
value-SUBCOMMAND = COMMAND
value-RATE = RATE
value-MIN--MAX = MIN..MAX

## --help: the commands

cmd-charla-about = Distributed chat and messaging through a broker (Redis, RabbitMQ, Kafka, or its own)
cmd-charla-long-about = charla: programs on different computers talk only through a message broker.
    It is the workshop's emisor.py / receptor.py as one fast binary, over the broker you already run.
cmd-charla-after =
    Examples (the workshop, on two computers that both reach 192.168.0.10):
      charla listen                                  # consumer, like receptor.py
      charla send                                    # producer, like emisor.py (asks your name)
      charla send --name Juan "Hola María!"          # one message
      seq 1000 | charla send --name bot              # one message per line of stdin
      charla listen --json --count 10                # NDJSON, stop after 10
      charla check --broker redis://192.168.0.10:6380
      charla chat --name Juan                        # the terminal chat: rooms, history, who is on
      charla web                                     # the browser chat on http://127.0.0.1:8080/
      charla web --archive postgres://postgres@127.0.0.1/charla   # history and search in PostgreSQL

    Brokers (--broker or CHARLA_BROKER):
      redis://[:password@]host[:port][/db]   Redis, Valkey or `charla serve` (rediss:// for TLS)
      amqp://user:pass@host[:port]/vhost     RabbitMQ
      kafka://host[:port]                    Kafka protocol
      memory://[name]                        in-process (tests, single-process demos)
    Default: redis://127.0.0.1:6380, the workshop's port.
    A password in a URL (or any argument) is visible to every user of the machine in `ps`: put it
    in CHARLA_PASSWORD or in a file named by --password-file instead, and leave it out of the URL.

    Delivery modes (--mode):
      queue      each message to one consumer, acknowledged (default; the seed's list chat_cola)
      broadcast  every online listener gets every message, nothing is kept
      stream     durable log: replay with --from-beginning / --from ID, resume with --group
                 (what a group's members share depends on the broker: charla listen --help)
      routing    listen by pattern: --room 'chat.*' or 'app.error.#'; send to a topic

    Language: --lang en|es, CHARLA_LANG, the config file's lang, else LANG / LC_ALL.
    Config file: --config PATH, CHARLA_CONFIG, ./charla.toml or ~/.config/charla/config.toml,
    with keys broker, name, room, mode, lang, group, prefetch.
cmd-check-about = Connect, ping, and say which broker and version answers (like the seed's broker.py)
cmd-send-about = Send messages: interactive like emisor.py, one from arguments, or one per stdin line
cmd-listen-about = Receive and print messages like receptor.py (Ctrl+C prints the count)
cmd-bench-about = Measure end-to-end throughput and latency percentiles on a broker and mode
cmd-serve-about = Run the embedded broker: the Redis protocol on 127.0.0.1:6380, no install needed
cmd-serve-after = What it is:
      A broker inside charla that speaks the Redis protocol (RESP2/RESP3). Every Redis client
      works with it unchanged: the workshop's broker.py / emisor.py / receptor.py (they expect
      localhost:6380, the default here), redis-cli, redis-py, node-redis, and charla's own
      redis:// backend. Lists, sets, sorted sets, pub/sub, streams with consumer groups,
      transactions, expiry.

    Examples:
      charla serve                                     # 127.0.0.1:6380, memory only
      charla serve --bind 0.0.0.0 --requirepass-file pw.txt  # reachable from the other computer
      charla serve --appendonly --dir ./data           # keep messages across restarts
      charla serve --appendonly --appendfsync always   # no acknowledged write lost, even on a crash
      redis-cli -p 6380 ping                           # talk to it with any Redis client

    What it serves (RESP2 and RESP3, replies as redis-server 7 gives them): strings and counters
    (GET/SET with options, INCR family, APPEND, GETRANGE/SETRANGE, GETEX, GETDEL, MGET/MSET),
    bitmaps (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD[_RO]), keys and expiry (DEL, EXISTS,
    TOUCH, TYPE, KEYS, SCAN, RENAME, COPY, MOVE, EXPIRE family, TTL, PERSIST, RANDOMKEY, OBJECT),
    SORT[_RO], lists with blocking pops (LPUSH…, LINSERT, LMOVE, BLPOP, BLMOVE, LMPOP…), hashes
    (HSET…, HSCAN, HINCRBYFLOAT, HRANDFIELD…), sets (SADD…, SINTER/SUNION/SDIFF[STORE], SPOP,
    SSCAN…), sorted sets (ZADD, ZRANGE with BYSCORE/BYLEX/REV/LIMIT, ZRANGESTORE, ZRANK, ZPOPMIN,
    ZMPOP, BZPOPMIN, BZMPOP, ZUNION/ZINTER/ZDIFF[STORE], ZRANDMEMBER, ZSCAN…), streams and
    consumer groups (XADD, XREAD[GROUP] with BLOCK, XACK, XPENDING, XCLAIM, XAUTOCLAIM, XGROUP,
    XINFO…), pub/sub, MULTI/EXEC/WATCH, keyspace notifications (CONFIG SET notify-keyspace-events
    KEA), and CLIENT (incl. REPLY, UNBLOCK), CONFIG, INFO (with commandstats), COMMAND, SELECT (16
    databases), FLUSHALL, FUNCTION FLUSH/LIST, SHUTDOWN. Not served: scripting (EVAL, FUNCTION
    LOAD), cluster, replication, RDB snapshots. What is not served is refused with an error, never
    answered OK and ignored (docs/serve-differences.md lists every known difference from
    redis-server).

    Security: it listens on 127.0.0.1 only unless --bind says otherwise. With no password,
    clients from other machines are refused with an explanation (protected mode, as Redis does);
    set a password, or, on a trusted network, --protected-mode no. Give the password in a file
    (--requirepass-file, or CHARLA_REQUIREPASS_FILE) or in CHARLA_REQUIREPASS: --requirepass on the
    command line works too, but every user of the machine sees it in `ps`. Clients then give it
    with CHARLA_PASSWORD or --password-file (or redis://:PASSWORD@HOST:6380, visible in `ps` too).

    Persistence: off by default when you start it yourself, like the workshop's Redis. With
    --appendonly every write is appended to DIR/charla.aof, replayed on start, and compacted when
    it grows. --appendfsync: always = a reply is sent only after the write is on disk; everysec =
    at most ~1 s lost on a power cut; no = the OS decides.

    Started for you: when `charla send` or `charla listen` find nothing at the default address
    (and no --broker / CHARLA_BROKER / config file names one; CHARLA_NO_AUTOSTART=1 turns this
    off), they start this broker in the background, durable, as:
      charla serve --bind 127.0.0.1 --port 6380 --appendonly yes --appendfsync always
                   --dir $XDG_DATA_HOME/charla   (else ~/.local/share/charla)
    with its log in charla-serve.log in that directory. CHARLA_SERVE_PORT moves it (and the
    default broker address) to another port. It keeps running until you stop it: kill PID.

    Limits (Redis's, with its defaults): a client without the password may send only small
    requests (10 arguments of 16 KiB); --proto-max-bulk-len and --client-query-buffer-limit bound
    what anyone may send (refused with an error before it is read); a subscriber that does not
    read what is published to it is disconnected (--client-output-buffer-limit); TCP keepalive
    finds clients that vanished. CONFIG SET changes these while running.

    A damaged file (anything but whole commands, apart from a last command cut short by a
    crash, which is dropped) stops the start with its byte offset; --aof-repair cuts it there.

    Stop with Ctrl+C or SIGTERM: connections are closed and the file is flushed.
cmd-chat-about = Chat in the terminal: rooms, history, who is online (`charla chat --name Juan`)
cmd-chat-after = While the chat's screen is up, log lines (warnings, reconnects; more with -v) go to $XDG_STATE_HOME/charla/chat.log (~/.local/state/charla/chat.log), not to the terminal; /help in the chat names the file.
cmd-archive-about = Store rooms' messages in PostgreSQL, in a consumer group that catches up after outages
cmd-web-about = Serve the browser chat: a page, a WebSocket and an HTTP API over the broker's rooms
cmd-work-about = Run a command once per message of a queue, with retries, timeouts and dead letters
cmd-work-after = How it works:
      Each message is taken from the room's queue and COMMAND runs for it, directly (no shell:
      write sh -c '…' for one), with the message as JSON on stdin and in the environment:
      CHARLA_ID, CHARLA_ROOM, CHARLA_USUARIO, CHARLA_MENSAJE, CHARLA_ATTEMPT (1, 2, …) and
      CHARLA_DELIVERIES (how many times the broker handed it out before), and CHARLA_FILE (the
  full path of an upload through `charla web --uploads`, empty otherwise).
      Exit status 0 acknowledges the message. A failure (another status, a signal, or running past
      --timeout, when its whole process group is killed) is retried by this worker after the
      --backoff wait, holding the message meanwhile; after --max-deliveries attempts it goes to the
      dead letters with the reason and the end of its stderr.
      SIGTERM or Ctrl+C: nothing new is taken, running commands get --grace to finish, then are
      killed; unfinished messages go back to the queue. A second signal stops at once.

    Examples:
      charla work --room fotos -- ./resize.sh                  # one at a time
      charla work --room fotos --concurrency 4 --timeout 2m -- convert-one
      charla work --room mails --json -- sh -c 'send-mail "$CHARLA_MENSAJE"'
      redis-cli LRANGE 'charla:{"{"}fotos{"}"}:dead' 0 -1         # what died, and why
cmd-help-about = Print this message or the help of the given subcommand(s)

## --help: the arguments (arg-COMMAND-ID, or arg-ID for the global and shared ones)

arg-help = Print help
arg-version = Print version
arg-help-subcommand = Print the help of this subcommand
arg-archive-archive = The PostgreSQL database to archive into (created if missing, schema migrated): postgres://USER@HOST:PORT/DATABASE; a password is better in PGPASSWORD than in the URL
arg-archive-room = A room to archive (repeat for more) [default: every room the broker keeps, looked up again every 10 s]
arg-archive-mode = stream: read in the archivers' consumer group, catching up after any outage; broadcast: store what is heard live (nothing is kept to catch up from)
arg-archive-group = Consumer group of the archivers (stream mode)
arg-bench-mode = Delivery mode to measure
arg-bench-messages = Messages to send in total (with --rate and --duration: rate × duration)
arg-bench-rate = Open loop: send this many messages per second on a fixed schedule, whatever the broker does, and measure each message's latency from when it was due (not from when it could be sent: queueing delay counts, as in wrk2). Without it, producers send as fast as the broker takes them (closed loop: throughput, but latency hides the queueing)
arg-bench-duration = With --rate: run this long (`10s`, `1m`, `500ms`, or seconds) instead of --messages
arg-bench-size = Bytes of text per message (the `mensaje` field)
arg-bench-producers = Concurrent producers, each with its own connection
arg-bench-consumers = Concurrent consumers, each with its own connection
arg-bench-batch = Messages per publish call (1 = one round trip per message, like the seed's emisor); with --rate, the most messages a late producer sends at once to catch up
arg-bench-prefetch = Unacknowledged messages a consumer holds (queue and stream); also the receive batch
arg-bench-window = Most messages published and not yet delivered (0 = no limit): backpressure, so that producers do not take the CPU the consumers and a local broker need (not with --rate: an open loop never waits)
arg-bench-room = Room to use, left as it is afterwards [default: a fresh random name, removed afterwards except on Kafka, where bench deletes no topic and prints what it leaves]
arg-bench-json = Print one JSON object with the results
arg-chat-name = Your name [default: CHARLA_NAME, the config file's name, then your login name]
arg-chat-room = Room to start in (/join ROOM moves) [default: general]
arg-chat-mode = stream: rooms keep their history (shown on joining); broadcast: live only
arg-chat-history = Messages shown on joining a room
arg-check-json = Print the result as one JSON object
arg-listen-group = Consumer group (stream mode): the group resumes where its members acked. Redis and `charla serve`: the members share the room's messages. Kafka: a room is one partition in stream mode, so one member gets all of it and the others stand by, taking over when it dies (queue mode spreads a room over partitions). RabbitMQ: no stream groups
arg-listen-from-beginning = Stream mode: start from the oldest message the broker keeps
arg-listen-from = Stream mode: start after this offset (as printed in --json output: a Redis stream id, a RabbitMQ offset, a Kafka PARTITION:OFFSET)
arg-listen-since = Stream mode: start at the first message stored at or after TIME: a date-time (2026-11-24T14:30:00Z), unix seconds (1764000000), or an age (90s, 10m, 2h, 1d)
arg-listen-json = Print one JSON object per line (NDJSON) instead of text
arg-listen-count = Exit after receiving this many messages (other applications' JSON events count too)
arg-listen-prefetch = Unacknowledged messages held at once (queue and stream) [default: 100]
arg-listen-keep-duplicates = Print messages delivered again with an id already seen (normally dropped)
arg-send-name = Your name in messages (the seed's `usuario`) [default: asked, or "Usuario"]
arg-send-interactive = Prompt like emisor.py even when stdin is not a terminal
arg-send-quiet = Do not print a line per message sent
arg-send-message = The message to send (words are joined with spaces). Without it, lines are read from stdin: interactively from a terminal, one message per line from a pipe. Options are options wherever they stand; after `--` everything is message text (`-- --room`).
arg-serve-bind = Address to listen on (0.0.0.0 = every interface)
arg-serve-port = Port to listen on (6380 is the workshop's)
arg-serve-requirepass = Password clients must give (AUTH, or redis://:PASSWORD@host). On the command line it is visible in `ps`: prefer CHARLA_REQUIREPASS or --requirepass-file
arg-serve-requirepass-file = File whose content is the password clients must give (one trailing newline ignored)
arg-serve-protected-mode = Refuse clients from other machines while no password is set
arg-serve-dir = Directory of the append-only file
arg-serve-appendonly = Keep an append-only file and replay it on start (`--appendonly` or `--appendonly yes`)
arg-serve-appendfsync = When to fsync the append-only file
arg-serve-maxclients = Most simultaneous clients
arg-serve-proto-max-bulk-len = Largest argument a client may send, e.g. 512mb (Redis's proto-max-bulk-len)
arg-serve-client-query-buffer-limit = Most bytes one client's unfinished request may take, e.g. 1gb (client-query-buffer-limit)
arg-serve-client-output-buffer-limit = Disconnect a subscriber whose unread messages pass HARD, or stay above SOFT for SECS
arg-serve-tcp-backlog = Listen backlog (0 = the system's maximum, net.core.somaxconn)
arg-serve-tcp-keepalive = Seconds of silence before TCP keepalive probes a client (0 = off)
arg-serve-aof-repair = Before starting, cut a damaged append-only file back to its last whole command (like redis-check-aof --fix), printing what was cut
arg-web-listen = Address to serve the page, the WebSocket and the API on (0.0.0.0:8080 for the LAN)
arg-web-mode = stream: rooms keep their history (shown on joining, no gaps after a broker restart); broadcast: live only
arg-web-history = Messages shown on joining a room
arg-web-max-message-bytes = Longest message, in bytes of UTF-8 text
arg-web-rate = Messages a page (or an API client address) may post per second, sustained
arg-web-burst = Messages a page may post in a burst above the rate
arg-web-archive = Keep every message of the rooms served in this PostgreSQL database (created if missing) and serve older pages and searches from it: postgres://USER@HOST:PORT/DB
arg-web-linger-ms = Milliseconds a room's messages are gathered before going out to its pages as one burst: fewer wakeups and writes per page under load, at most this much more latency (0 sends each message at once)
arg-web-page-backlog = Messages a page may fall behind its room before it is disconnected (with the reason)
arg-web-max-connections-per-ip = Connections one client address may hold at once, pages and HTTP requests alike (beyond it: 429 and closed). Loopback counts like any address: behind a reverse proxy on the same machine every client is the proxy's address, so raise it there, or 0 for no limit
arg-web-header-timeout = Seconds a connection has to send a request's headers (after connecting, or after its previous answer) before it is closed
arg-web-idle-timeout = Seconds a page may send nothing before it is dropped; it is pinged after a third of it (browsers answer on their own)
arg-web-allowed-origin = A site whose pages may open the WebSocket and post (repeatable): https://chat.example. The gateway's own pages always may; pages of other sites are refused (403), as are requests a browser marks Sec-Fetch-Site: cross-site. Requests without Origin (curl, programs) are let through. '*' allows every site
arg-web-allowed-host = A host name to serve (repeatable), such as the public name in front of a reverse proxy. Requests naming another host are refused (403, against DNS rebinding). Served without it: on a loopback --listen, loopback addresses and localhost only; on any other, also any IP address and this machine's host name. '*' serves every name
arg-broker = Broker URL [default: redis://127.0.0.1:6380]
arg-password-file = File whose content is the broker password, merged into the broker URL: unlike a password in the URL or in argv, it is not shown by `ps` (CHARLA_PASSWORD works too)
arg-partitions = Kafka: partitions of the topics charla creates (a topic that exists keeps its own); the same as ?partitions=N in the URL [default: 3]
arg-config = Config file (TOML) [default: ./charla.toml, then ~/.config/charla/config.toml]
arg-lang = Output language: en or es [default: from LANG]
arg-verbose = More log output on stderr (-v info, -vv debug); RUST_LOG overrides
arg-log-format = Log lines as text, or as one JSON object each (for a log collector): time, level, message and fields
value-FORMAT = FORMAT
arg-mode = Delivery mode: queue, broadcast, stream or routing [default: queue]
arg-room = Room: the queue, channel, stream or topic name on the broker (a pattern when listening in routing mode) [default: chat_cola; chat_stream in stream mode; chat.general / chat.# in routing mode]
arg-web-max-rooms = Rooms the gateway reads at once (each is a subscription on the broker); a page asking for one more is refused with the reason (503). Rooms no page reads any more are let go within a minute
arg-web-uploads = Take pictures at POST /api/rooms/ROOM/uploads (and the page's 📎 button) and keep them in DIR; each becomes a task in --upload-room for `charla work`, and the workers' notices (`charla work --notify`) are said in the room, with the thumbnail
arg-web-upload-room = With --uploads: the queue room the tasks go to
arg-web-max-upload-bytes = With --uploads: the largest picture taken (10MiB, 512kb, …)
arg-work-concurrency = Commands run at once (each holds one message)
arg-work-timeout = Kill a command (its whole process group) that runs longer than this: 500ms, 30s, 5m; it counts as a failed attempt
arg-work-max-deliveries = Attempts before a message goes to the dead letters, earlier deliveries of it included
arg-work-backoff = Wait before a retry: MIN, doubled after each failed attempt up to MAX, times a random 0.5 to 1.5
arg-work-grace = On SIGTERM or Ctrl+C, how long running commands may go on before they are killed
arg-work-json = Print one JSON object per event (NDJSON) instead of text
arg-work-command = The command to run for each message, with its arguments, after `--` (no shell)
arg-work-count = Exit once this many tasks were taken and finished (scripts, benchmarks)
arg-work-notify = Publish one completion message per task to ROOM (broadcast) [default ROOM: the room's name and `.done`]: its id as correlation id, status, exit code or signal, duration, the first lines of its output; what `charla send --wait` waits for
cmd-dead-about = See a room's dead letters and why they died; replay or purge them
cmd-dead-after = What a dead letter is:
      A message that could not be processed: not JSON or too large (not-json, too-large),
      delivered too many times without an ack (max-deliveries), refused by a consumer (nacked),
      or whose `charla work` command kept failing (command-failed: exit 3, timeout). Each keeps
      the reason, the attempts, when it failed first and last, the last error and how many
      times it was replayed.

    Examples:
      charla dead --room fotos                         # list: id, reason, attempts, age, sender
      charla dead --room fotos --stats                 # how many per reason
      charla dead --room fotos --replay --all          # put them all back in the room
      charla dead --room fotos --replay --reason timeout
      charla dead --room fotos --purge --older-than 7d
      charla dead --room fotos --json                  # one JSON object per dead letter

    A replay or a purge needs a selection (--id, --all, --reason, --older-than), says how many
    it touched, and is safe to run twice: a message is never put back twice, and a replay
    stopped half way loses none (on every broker; on RabbitMQ at least once, with the same id).
arg-dead-stats = Count the dead letters by reason instead of listing them
arg-dead-replay = Put the selected dead letters back in the room, marked as replayed
arg-dead-purge = Remove the selected dead letters for good
arg-dead-id = Only these dead letters (the ids of the listing); repeat for several
arg-dead-all = Every dead letter of the room
arg-dead-reason = Only dead letters of this reason (not-json, too-large, max-deliveries, command-failed, timeout, nacked, unknown)
arg-dead-older-than = Only dead letters that died longer ago than this (90s, 10m, 2h, 7d)
arg-dead-limit = List at most this many [default: 100]
arg-dead-json = Print JSON (one object per dead letter, or one object of counts)
dead-select-needed = say which dead letters: --id ID, --all, --reason REASON or --older-than AGE
dead-replayed = { $count ->
    [one] 1 dead letter of { $room } put back in the room
   *[other] { $count } dead letters of { $room } put back in the room
}
dead-purged = { $count ->
    [one] 1 dead letter of { $room } removed
   *[other] { $count } dead letters of { $room } removed
}
dead-none = { $room } has no dead letters
dead-total = { $count } dead letters in { $room }
dead-attempts = { $count ->
    [one] 1 attempt
   *[other] { $count } attempts
}
dead-replays = { $count ->
    [one] replayed once
   *[other] replayed { $count } times
}
dead-age-bad = --older-than { $text }: expected an age such as 90s, 10m, 2h, 7d
work-start = working on { $room } ({ $mode }), { $count } at a time: { $command }
work-done = ok { $id } { $secs }s
work-failed = failed { $id } { $why } (attempt { $attempt }/{ $max }, retry in { $secs }s)
work-dead = dead { $id } { $why } after { $count ->
    [one] 1 attempt
   *[other] { $count } attempts
}
work-given-back = given back { $id } (stopping)
work-summary = done { $done }, failed attempts { $failed }, dead { $dead }, given back { $back }
work-progress = done { $done } · failed { $failed } · dead { $dead } · running { $running } · { $rate }/s
work-amqp-long = ⚠️  --timeout is { $minutes } min: RabbitMQ closes a channel whose delivery stays unacknowledged past its consumer_timeout (30 min by default), and the task is then given to another worker while it still runs here. Raise consumer_timeout in rabbitmq.conf (or by policy on the queue, RabbitMQ 3.12+) above the longest task.
work-notice-done = ✅ task { $id } done in { $secs } s
work-notice-dead = ❌ task { $id } died: { $why }
send-wait-timeout = no notice for task { $id } within { $secs } s (does a `charla work --notify` run on that room?); the task stays queued
arg-send-wait = Send MESSAGE as a task and wait for its completion notice from `charla work --notify`; exit with the task's status (124 when none comes within --timeout)
arg-send-timeout = With --wait: how long to wait for the notice
arg-send-reply-room = With --wait: the room the notices come on [default: the room's name and `.done`]
arg-send-json = With --wait: print the notice as JSON
arg-web-read-rate = GET /api/… requests a client may make per second, sustained, over all its pages (beyond it: 429 with Retry-After)
arg-web-read-burst = GET /api/… requests a client may make in a burst above --read-rate
arg-web-trusted-proxy = A reverse proxy in front of the gateway (repeatable): an address or a range such as 10.0.0.0/8. Only from these is the client's address taken from X-Forwarded-For / Forwarded (the rightmost hop that is not a trusted proxy), and, with --auth proxy, the user from --auth-header; from anyone else those headers are ignored
arg-web-auth = Who people are. none: anyone picks a name (a name online in a room is kept for the client that has it); password: a site or room password (--password-file) lets people in; jwt: a signed token, whose sub is the name and optional rooms / channels claim the rooms; proxy: the user a trusted proxy names in --auth-header. Names proved by jwt or proxy are marked ✓
arg-web-auth-password-file = With --auth password: a file with the site password on a line, and/or lines ROOM:PASSWORD for rooms with their own
arg-web-jwt-secret-file = With --auth jwt: a file holding the HS256 secret
arg-web-jwt-public-key-file = With --auth jwt: a file holding the RS256 public key (PEM)
arg-web-auth-header = With --auth proxy: the header the trusted proxy names the user in
value-yes-no = yes|no
value-pubsub-HARD-SOFT-SECS = pubsub HARD SOFT SECS
value-C = C
value-AGE = AGE
value-REASON = REASON
value-P = P
value-CIDR = CIDR
value-FILE = FILE
value-HEADER = HEADER
value-MSGS_PER_SEC = MSGS_PER_SEC
value-OFFSET = OFFSET
value-APPENDFSYNC = always|everysec|no
value-MAXCLIENTS = MAXCLIENTS

## charla chat (the terminal chat)

chat-join-failed = cannot join #{ $room }: { $reason }
chat-history-above = — { $count } earlier messages above; live from here —
chat-welcome = you are { $name }; type a message and Enter; /help for commands
chat-lagged = { $count } messages went by too fast to show
chat-joined = → { $name } joined
chat-left = ← { $name } left
chat-connected = connected to { $broker }
chat-lost = lost the broker ({ $reason }); reconnecting — what you type is kept and sent when it is back
chat-usage-join = /join needs a room: /join ROOM
chat-usage-name = /name needs a name: /name NAME
chat-not-sent = not sent: { $reason }
chat-renamed = you are now { $name }
chat-who = online in #{ $room }: { $names }
chat-help-join = /join ROOM  go to another room (created when someone writes in it)
chat-help-name = /name NAME  change your name
chat-help-who = /who        who is online in this room
chat-help-quit = /quit       leave (also Esc or Ctrl+C); PageUp/PageDown scroll
chat-help-log = warnings and reconnects are logged to { $file }
chat-unknown = unknown command { $command }; /help lists them
chat-status-reconnecting = reconnecting: { $reason }
chat-status-waiting = { $count } waiting to be sent
chat-status-scrolled = scrolled up (PageDown)
chat-panel-rooms = rooms
chat-panel-online = online ({ $count })
chat-needs-terminal = charla chat draws on a terminal; for scripts and pipes use `charla send` and `charla listen`
chat-closing = the chat is closing
chat-broker-error = the broker answered with an error ({ $detail })
chat-unsent = ⚠️  { $count } message(s) could not be sent: the broker is unreachable
chat-no-log = ⚠️  cannot write the chat's log file { $file } ({ $reason }); log lines are dropped

## charla serve

serve-cannot-listen = cannot listen on { $address } (is another broker already running there? try --port)
serve-started = charla serve { $version } listening on { $address } (redis://{ $address }){ $password }{ $storage }
serve-password-required = , password required
serve-append-only = , append-only file in { $dir }
serve-memory-only = , memory only

## charla web (the gateway's own lines)

web-open-files = { $count } open files
web-open-files-error = cannot read or raise the open-files limit: { $reason }
web-open-files-unknown = open-files limit unknown
web-cannot-listen = cannot listen on { $address }
web-archive = , archive { $url }
web-uploads = uploads kept in { $dir }; each is a task in room { $room } (charla work --room { $room } --notify -- …)
web-uploads-dir = cannot use { $dir } for uploads
web-no-connection-limit = no limit of connections per address
web-connection-limit = at most { $count } connections per address
web-started = 💬 charla web on http://{ $address }/ — broker { $broker } ({ $mode } mode){ $archive }; { $limit }, { $files }; Ctrl+C stops
web-names-unverified = ⚠ names are not verified (--auth none): anyone who reaches { $address } may pick any name not online; see --auth password|jwt|proxy
web-stopped = charla web stopped

## Errors at the binary's edge: the kind in words, the library's detail in parentheses

err-refused = cannot reach the broker at { $address }: the connection was refused ({ $detail })
err-timeout = cannot reach the broker at { $address }: no answer in time ({ $detail })
err-unknown-host = cannot reach the broker at { $address }: unknown host name ({ $detail })
err-unreachable = cannot reach the broker at { $address } ({ $detail })
err-auth = the broker at { $address } refused authentication ({ $detail })
err-unavailable = the broker at { $address } cannot serve requests for now ({ $detail })
err-invalid-url = invalid broker URL '{ $url }' ({ $detail })
hint-default-port = nothing listens on the workshop port (6380): start a broker with `charla serve` (or `redis-server --port 6380`), or name one with --broker
hint-unreachable = is the broker running and the address right? (on another computer: its LAN IP, and the firewall)
hint-auth-amqp = put the user in the URL (amqp://USER@host:port/vhost) and the password in CHARLA_PASSWORD or a file (--password-file)
hint-auth = give the password in CHARLA_PASSWORD or a file (--password-file); in the URL (redis://:PASSWORD@host:port) anyone can see it with `ps`

## The web page (page-…: served to the page as they are, { $name } filled in by its script)

page-menu = ☰ Rooms
page-language = Language
page-rooms = Rooms
page-new-room = new room
page-room-rule = letters, digits, '.', '_' or '-'
page-enter = Enter
page-online = Online
page-search-title = Search the archive
page-words = words
page-search = Search
page-older = Older messages
page-your-name = your name
page-write = write a message…
page-send = Send
page-ask-name = What is your name?
page-token = Password or token
page-verified = verified
page-unverified = ⚠ Names are not verified: anyone on the network may use a name that is not online.
page-joined = → { $name } joined
page-left = ← { $name } left
page-connected = connected
page-broker-away = reconnecting to the broker…
page-disconnected = disconnected; retrying…
page-bad-room = ⚠ invalid room: use letters, digits, '.', '_' or '-'
page-no-older = ⚠ no older messages
page-no-results = no results
page-name-length = ⚠ a name has 1 to 32 characters
page-name-hidden = ⚠ the name has an invisible or direction-changing character ({ $code }): remove it
page-refused = ⚠ the gateway refused to join: { $reason }
page-name-mark = ⚠ the name has the mark of a verified name: remove it
page-name-marks = ⚠ at most 2 accents or marks on one letter of a name

## charla bench

bench-header = charla bench: { $backend } { $mode }, { $messages } messages of { $size } B, { $producers } producer(s), { $consumers } consumer(s), batch { $batch }, prefetch { $prefetch }, window { $window }
bench-open-loop = {"  "}open loop   { $target } msg/s due, { $sent } msg/s sent (latency from when each was due)
bench-throughput = {"  "}throughput  { $rate } msg/s   ({ $received } delivered in { $secs } s)
bench-latency = {"  "}latency µs  p50 { $p50 }   p90 { $p90 }   p99 { $p99 }   p99.9 { $p999 }   max { $max }
bench-room-left = ℹ️  bench leaves the room you named as it is: { $room } (what bench sent to it in stream mode stays there)
bench-room-not-removed = ⚠️  could not remove the bench room { $room }: { $reason }
bench-kafka-left = ℹ️  bench deletes no Kafka topic (a deletion is cluster-wide, and tansu 0.6 deletes every topic when asked to delete one); it leaves: { $topics }
    {"   "}to remove them on Apache Kafka (not on tansu):
bench-bad-duration = --duration "{ $text }": expected a time like 10s, 1m, 500ms or seconds

## Command lines clap refuses (English uses clap's own messages; these are its Spanish twins)

usage-unknown-argument = unexpected argument '{ $arg }'
usage-unknown-command = unrecognized subcommand '{ $command }'
usage-invalid-value = invalid value '{ $value }' for '{ $arg }'
usage-missing = a required argument is missing: { $arg }
usage-conflict = '{ $arg }' cannot be used with '{ $other }'
usage-wrong-values = wrong number of values for '{ $arg }'
usage-other = the command line is not valid
usage-more = For more information, try '--help'.

## check, listen, send, archive and the rest of the binary

check-timing = {"   "}connected and pinged in { $ms } ms; modes: { $modes }
check-ok = ✅ The broker works
listen-missed = ⚠️  { $count } message(s) of '{ $room }' were removed by the broker's retention before this listener read them
listen-stream-only = --group, --from-beginning, --from and --since apply to --mode stream only (this is { $mode } mode)
send-line-not-sent = line { $line }: { $reason }; not sent
send-not-utf8 = line { $line } is not UTF-8 text; not sent
send-too-long = line { $line }: { $size } bytes is over the limit of { $limit } bytes for one message; not sent
chat-mode = --mode { $mode }: a chat room is a stream (with history) or broadcast (live only)
archive-stopped = charla archive stopped
no-runtime = cannot start the async runtime: { $reason }
config-unreadable = cannot read the config file { $file }
config-bad = bad config file { $file }
config-key = config file key '{ $key }'
password-not-utf8 = CHARLA_PASSWORD is not valid UTF-8 text
password-file-unreadable = cannot read the password file { $file }
password-file-empty = the password file { $file } is empty

## Refused flags and failed steps of the subcommands (an OS or library reason follows after ": ")

web-max-message-bytes = --max-message-bytes: 1 to { $max } bytes
web-rate = --rate must be above 0 and --burst at least 1
web-read-rate = --read-rate must be above 0 and --read-burst at least 1
web-timeouts = --header-timeout must be at least 1 s and --idle-timeout at least 3 s
web-auth-stray-file = --auth-password-file goes with --auth password, --jwt-secret-file and --jwt-public-key-file with --auth jwt
web-auth-password-file = --auth password needs --auth-password-file FILE
web-auth-jwt-key = --auth jwt needs one of --jwt-secret-file (HS256) or --jwt-public-key-file (RS256)
web-auth-proxy-trusted = --auth proxy needs --trusted-proxy CIDR: the user header is only believed from the proxy, or anyone could send it
file-unreadable = cannot read { $path }
file-not-utf8 = { $path } is not UTF-8 text
serve-password-twice = the password is given twice (--requirepass-file and --requirepass or CHARLA_REQUIREPASS): give it once
serve-repairing = repairing { $path }
since-before-1970 = --since { $text }: before 1970
since-bad = --since { $text }: expected a date-time (2026-11-24T14:30:00Z), unix seconds, or an age such as 90s, 10m, 2h, 1d
archive-unreachable = cannot open the archive { $url } — is PostgreSQL running there, and the URL postgres://USER@HOST:PORT/DATABASE? ({ $detail })
archive-cannot-list = { $backend } cannot list its rooms: name them with --room
send-after = after { $count } messages sent
bench-rate = --rate must be at least 1 message per second
bench-subscribing = subscribing
bench-publishing = publishing
bench-consuming = consuming
bench-producer-task = producer task
bench-consumer-task = consumer task
bench-merging = merging histograms
bench-consumers-late = consumers did not finish within 10 minutes

## The chat rules' refusals (charla-chat's check_room / check_name / check_text), as the chats say them

rule-room = a room is 1 to 64 letters, digits, '.', '_' or '-'
rule-name-length = a name is 1 to { $max } characters
rule-name-control = the name has a control character ({ $code }); remove it
rule-name-bidi = the name has a character that changes the direction of the text ({ $code }): it can make a name look like another; remove it
rule-name-invisible = the name has an invisible character ({ $code }): it makes a name look like another; remove it
rule-name-mark = the name has the mark of a verified name; remove it
rule-name-marks = at most { $max } accents or marks on one letter of a name
rule-text-empty = the message is empty
rule-text-long = the message has { $len } bytes; the limit is { $max }

## What `charla web` tells a page or an API client (bodies of refusals, `error` frames, close
## reasons), in the language of the request. Technical detail stays in parentheses.

gw-bad-json = expected {"{"}"mensaje": "…"{"}"} ({ $detail })
gw-bad-page = cannot read that page of history ({ $detail })
gw-archive-away = the archive cannot answer now ({ $detail })
gw-body-late = the request body did not arrive within { $secs } s
gw-body-too-large = the request body is over { $max } bytes (or broken off)
gw-broker-away = the broker is away ({ $detail }); try again shortly
gw-broker-refused = the broker refused it ({ $detail })
gw-broker-slow = the broker did not answer in time
gw-closing = the gateway is shutting down
gw-host = this gateway does not serve the host name '{ $host }'; start it with --allowed-host to serve it
gw-idle = nothing from the page for { $secs } s, not even a pong
gw-join-failed = cannot join the room: { $reason }
gw-max-rooms = this gateway already serves its most rooms ({ $max }); join one of them, or try again when some are left
gw-name-held = the name '{ $name }' is already online in room '{ $room }'; pick another
gw-names-full = too many names online; try again later
gw-no-upgrade = this connection cannot be upgraded to a WebSocket (HTTP/1.1 only)
gw-not-an-id = before={ $id }: not a message id
gw-not-queued = the message could not be queued: { $reason }
gw-not-your-name = you are '{ $name }': you cannot post as '{ $asked }'
gw-origin = a page on { $origin } may not use this gateway; start it with --allowed-origin { $origin } to allow it
gw-origin-cross-site = a page on another site ({ $origin }) may not use this gateway; start it with --allowed-origin to allow one
gw-page-limit = limit: 1 to { $max } messages
gw-password-needed = this gateway asks for a password
gw-password-wrong = wrong password
gw-password-wrong-room = wrong password for room '{ $room }'
gw-proxy-only = this gateway takes its users from a trusted proxy; connect through it
gw-proxy-silent = the proxy did not say who you are
gw-proxy-user = the proxy's user: { $reason }
gw-room-closed = the room closed
gw-search-needs-archive = searching needs the archive: start the gateway with --archive postgres://…
gw-text-frames = send text frames
gw-token-algorithm = the token is signed with another algorithm
gw-token-expired = the token has expired
gw-token-invalid = not a valid token ({ $detail })
gw-token-needed = this gateway asks for a token (JWT)
gw-token-no-key = the gateway has no key to check tokens with
gw-token-room = your token does not open room '{ $room }'
gw-token-signature = the token's signature is not valid
gw-token-sub = the token's sub: { $reason }
gw-too-fast = too fast: at most { $rate } messages per second from one client; wait { $wait } s
gw-too-many-reads = too many requests: at most { $rate } a second from one client
gw-too-slow = too slow: fell { $count } messages behind the room; reload to catch up
gw-unread-pongs = sent { $count } pings without reading their pongs
gw-websocket-key = missing or bad Sec-WebSocket-Key
gw-websocket-only = this address takes WebSocket connections only
gw-websocket-version = WebSocket version 13 only
gw-uploads-off = this gateway takes no uploads (start it with --uploads DIR)
gw-uploads-busy = { $count } uploads are arriving already; try again in a moment
gw-upload-form = expected a form (multipart/form-data) with a 'file' and your 'usuario'
gw-upload-no-file = the form has no 'file'
gw-upload-too-large = the file is over { $max } bytes (--max-upload-bytes)
gw-upload-not-picture = not a picture: JPEG, PNG, GIF or WebP only
gw-upload-store = the file could not be kept ({ $reason })
gw-upload-not-queued = the task could not be queued ({ $reason }); nothing was kept
upload-thumb-ready = 🖼️ thumbnail ready: { $file }
upload-done = ✅ { $file }: done
upload-failed = ❌ { $file }: { $why } { $detail }
page-upload = 📎
page-upload-title = Send a picture (or drop it here)
page-upload-failed = ⚠ the picture was not sent: { $reason }
page-uploading = sending { $file }…
