# El catálogo en español de charla. Cada mensaje tiene su gemelo en inglés en
# ../en/charla.ftl (las pruebas del crate fallan si uno de los dos lo tiene y el otro no).
# Las líneas del taller (sent, received, exiting…) son las de emisor.py / receptor.py,
# carácter por carácter.

## Las líneas de la semilla (emisor.py / receptor.py) y los comandos send / listen

sent = 📤 Enviado: [{ $name }] { $text }
received = 📥 Recibido: [{ $name }] { $text } ({ $time })
connected = ✅ Conectado al broker { $product } { $version } en { $address }
connect-error = ❌ Error conectando al broker: { $reason }
sender-banner = 📤 EMISOR DE MENSAJES
listener-banner = 📥 RECEPTOR DE MENSAJES
ask-name = ¿Cuál es tu nombre?{" "}
hello = ¡Hola { $name }! Escribe mensajes (o 'salir' para terminar)
bye = 👋 ¡Hasta luego!
listening = 🔄 Escuchando mensajes... (sala '{ $room }', modo { $mode })
    Presiona Ctrl+C para salir
exiting = 👋 Saliendo... Mensajes recibidos: { $count }
sent-total = Mensajes enviados: { $count }
reconnecting = ⚠️  Se perdió el broker ({ $reason }); reintentando en { $secs } s
error-line = ❌ Error: { $reason }
arg-web-max-rooms = Salas que la pasarela lee a la vez (cada una es una suscripción en el broker); una página que pide una más se rechaza con el motivo (503). Las salas que ya no lee ninguna página se sueltan en menos de un minuto
arg-web-uploads = Aceptar imágenes en POST /api/rooms/SALA/uploads (y el botón 📎 de la página) y guardarlas en DIR; cada una se vuelve una tarea en --upload-room para `charla work`, y los avisos de los trabajadores (`charla work --notify`) se dicen en la sala, con la miniatura
arg-web-upload-room = Con --uploads: la sala-cola a la que van las tareas
arg-web-max-upload-bytes = Con --uploads: la imagen más grande que se acepta (10MiB, 512kb, …)
arg-work-concurrency = Órdenes ejecutadas a la vez (cada una retiene un mensaje)
arg-work-timeout = Matar una orden (todo su grupo de procesos) que dure más que esto: 500ms, 30s, 5m; cuenta como un intento fallido
arg-work-max-deliveries = Intentos antes de que un mensaje vaya a los mensajes muertos, contando sus entregas anteriores
arg-work-backoff = Espera antes de un reintento: MÍN, duplicado tras cada intento fallido hasta MÁX, por un factor al azar entre 0,5 y 1,5
arg-work-grace = Con SIGTERM o Ctrl+C, cuánto pueden seguir las órdenes en marcha antes de matarlas
arg-work-json = Imprimir un objeto JSON por evento (NDJSON) en lugar de texto
arg-work-command = La orden que se ejecuta para cada mensaje, con sus argumentos, tras `--` (sin shell)
arg-work-count = Salir cuando se hayan tomado y terminado tantas tareas (scripts, mediciones)
arg-work-notify = Publicar un mensaje de fin por tarea en SALA (difusión) [SALA por defecto: el nombre de la sala y `.done`]: su id como id de correlación, estado, código de salida o señal, duración, las primeras líneas de su salida; lo que espera `charla send --wait`
cmd-dead-about = Ver los mensajes muertos de una sala y por qué murieron; reenviarlos o borrarlos
cmd-dead-after = Qué es un mensaje muerto:
      Un mensaje que no se pudo procesar: no es JSON o es demasiado grande (not-json,
      too-large), se entregó demasiadas veces sin confirmación (max-deliveries), un consumidor
      lo rechazó (nacked), o el comando de `charla work` siguió fallando (command-failed: exit
      3, timeout). Cada uno guarda el motivo, los intentos, cuándo falló la primera y la última
      vez, el último error y cuántas veces se reenvió.

    Ejemplos:
      charla dead --room fotos                         # lista: id, motivo, intentos, edad, remitente
      charla dead --room fotos --stats                 # cuántos por motivo
      charla dead --room fotos --replay --all          # devolverlos todos a la sala
      charla dead --room fotos --replay --reason timeout
      charla dead --room fotos --purge --older-than 7d
      charla dead --room fotos --json                  # un objeto JSON por mensaje muerto

    Reenviar o borrar pide una selección (--id, --all, --reason, --older-than), dice cuántos
    tocó y se puede repetir sin riesgo: un mensaje nunca vuelve dos veces, y un reenvío cortado
    a medias no pierde ninguno (en todos los brokers; en RabbitMQ al menos una vez, con el
    mismo id).
arg-dead-stats = Contar los mensajes muertos por motivo en vez de listarlos
arg-dead-replay = Devolver a la sala los mensajes muertos elegidos, marcados como reenviados
arg-dead-purge = Borrar para siempre los mensajes muertos elegidos
arg-dead-id = Solo estos mensajes muertos (los id de la lista); repítelo para varios
arg-dead-all = Todos los mensajes muertos de la sala
arg-dead-reason = Solo los mensajes muertos de este motivo (not-json, too-large, max-deliveries, command-failed, timeout, nacked, unknown)
arg-dead-older-than = Solo los mensajes muertos que murieron hace más de esto (90s, 10m, 2h, 7d)
arg-dead-limit = Listar como mucho estas [por defecto: 100]
arg-dead-json = Imprimir JSON (un objeto por mensaje muerto, o un objeto con los recuentos)
dead-select-needed = di qué mensajes muertos: --id ID, --all, --reason MOTIVO o --older-than EDAD
dead-replayed = { $count ->
    [one] 1 mensaje muerto de { $room } devuelto a la sala
   *[other] { $count } mensajes muertos de { $room } devueltos a la sala
}
dead-purged = { $count ->
    [one] 1 mensaje muerto de { $room } borrado
   *[other] { $count } mensajes muertos de { $room } borrados
}
dead-none = { $room } no tiene mensajes muertos
dead-total = { $count } mensajes muertos en { $room }
dead-attempts = { $count ->
    [one] 1 intento
   *[other] { $count } intentos
}
dead-replays = { $count ->
    [one] reenviado una vez
   *[other] reenviado { $count } veces
}
dead-age-bad = --older-than { $text }: se esperaba una edad como 90s, 10m, 2h, 7d
work-start = trabajando en { $room } ({ $mode }), { $count } a la vez: { $command }
work-done = ok { $id } { $secs }s
work-failed = falló { $id } { $why } (intento { $attempt }/{ $max }, reintento en { $secs }s)
work-dead = muerto { $id } { $why } tras { $count ->
    [one] 1 intento
   *[other] { $count } intentos
}
work-given-back = devuelto { $id } (parando)
work-summary = hechos { $done }, intentos fallidos { $failed }, muertos { $dead }, devueltos { $back }
work-progress = hechos { $done } · fallidos { $failed } · muertos { $dead } · corriendo { $running } · { $rate }/s
work-amqp-long = ⚠️  --timeout es de { $minutes } min: RabbitMQ cierra el canal cuya entrega sigue sin confirmar pasado su consumer_timeout (30 min por defecto), y la tarea pasa a otro trabajador mientras aquí sigue corriendo. Sube consumer_timeout en rabbitmq.conf (o por política en la cola, RabbitMQ 3.12+) por encima de la tarea más larga.
work-notice-done = ✅ tarea { $id } hecha en { $secs } s
work-notice-dead = ❌ tarea { $id } muerta: { $why }
send-wait-timeout = ningún aviso de la tarea { $id } en { $secs } s (¿corre un `charla work --notify` en esa sala?); la tarea sigue en la cola
arg-send-wait = Enviar MENSAJE como tarea y esperar su aviso de fin de `charla work --notify`; sale con el estado de la tarea (124 si no llega en --timeout)
arg-send-timeout = Con --wait: cuánto esperar el aviso
arg-send-reply-room = Con --wait: la sala por la que llegan los avisos [por defecto: el nombre de la sala y `.done`]
arg-send-json = Con --wait: imprimir el aviso como JSON
arg-web-read-rate = Peticiones GET /api/… por segundo que puede hacer un cliente, sostenidas, sumando todas sus páginas (más allá: 429 con Retry-After)
arg-web-read-burst = Peticiones GET /api/… que un cliente puede hacer de golpe por encima de --read-rate
arg-web-trusted-proxy = Un proxy inverso delante de la pasarela (repetible): una dirección o un rango como 10.0.0.0/8. Solo de estos se toma la dirección del cliente de X-Forwarded-For / Forwarded (el último salto que no es un proxy de confianza), y, con --auth proxy, el usuario de --auth-header; de cualquier otro esas cabeceras se ignoran
arg-web-auth = Quién es cada cual. none: cualquiera elige un nombre (un nombre en línea en una sala queda para el cliente que lo tiene); password: una contraseña del sitio o de la sala (--password-file) deja entrar; jwt: un token firmado, cuyo sub es el nombre y cuyas reclamaciones opcionales rooms / channels dan las salas; proxy: el usuario que un proxy de confianza nombra en --auth-header. Los nombres probados por jwt o proxy llevan la marca ✓
arg-web-auth-password-file = Con --auth password: un archivo con la contraseña del sitio en una línea, y/o líneas SALA:CONTRASEÑA para las salas que tienen la suya
arg-web-jwt-secret-file = Con --auth jwt: un archivo con el secreto HS256
arg-web-jwt-public-key-file = Con --auth jwt: un archivo con la clave pública RS256 (PEM)
arg-web-auth-header = Con --auth proxy: la cabecera en la que el proxy de confianza nombra al usuario
value-yes-no = yes|no
value-pubsub-HARD-SOFT-SECS = pubsub HARD SOFT SEG
value-C = C
value-AGE = EDAD
value-REASON = MOTIVO
value-P = P
value-CIDR = CIDR
value-FILE = ARCHIVO
value-HEADER = CABECERA
value-MSGS_PER_SEC = MENSAJES_POR_SEG
value-OFFSET = POSICIÓN
value-APPENDFSYNC = always|everysec|no
value-MAXCLIENTS = MÁX_CLIENTES

## charla chat (el chat de la terminal)

chat-join-failed = no se pudo entrar en #{ $room }: { $reason }
chat-history-above = — arriba, { $count } mensajes anteriores; desde aquí, en vivo —
chat-welcome = eres { $name }; escribe un mensaje y Enter; /ayuda para los comandos
chat-lagged = { $count } mensajes pasaron demasiado rápido para mostrarlos
chat-joined = → { $name } entró
chat-left = ← { $name } salió
chat-connected = conectado a { $broker }
chat-lost = se perdió el broker ({ $reason }); reconectando — lo que escribas se guarda y se envía cuando vuelva
chat-usage-join = /sala necesita una sala: /sala SALA (o /join SALA)
chat-usage-name = /nombre necesita un nombre: /nombre NOMBRE (o /name NOMBRE)
chat-not-sent = no enviado: { $reason }
chat-renamed = ahora eres { $name }
chat-who = en línea en #{ $room }: { $names }
chat-help-join = /sala SALA      ir a otra sala (se crea cuando alguien escribe en ella; también /join)
chat-help-name = /nombre NOMBRE  cambiar tu nombre (también /name)
chat-help-who = /quien          quién está en línea en esta sala (también /who)
chat-help-quit = /salir          salir (también Esc o Ctrl+C); RePág/AvPág desplazan
chat-help-log = los avisos y reconexiones se anotan en { $file }
chat-unknown = comando desconocido { $command }; /ayuda los muestra
chat-status-reconnecting = reconectando: { $reason }
chat-status-waiting = { $count } por enviar
chat-status-scrolled = desplazado hacia arriba (AvPág)
chat-panel-rooms = salas
chat-panel-online = en línea ({ $count })
chat-needs-terminal = charla chat dibuja en una terminal; para scripts y tuberías usa `charla send` y `charla listen`
chat-closing = el chat se está cerrando
chat-broker-error = el broker respondió con un error ({ $detail })
chat-unsent = ⚠️  { $count } mensaje(s) no se pudieron enviar: el broker no responde
chat-no-log = ⚠️  no se puede escribir el registro del chat { $file } ({ $reason }); las líneas de registro se descartan

## --help: encabezados, nombres de valores y lo que clap añade a la ayuda de un argumento

help-usage = Uso:
help-options = Opciones
help-arguments = Argumentos
help-commands = Comandos
help-default = {" "}[por defecto: { $value }]
help-env = {" "}[variable: { $var }]
help-values = {" "}[valores: { $values }]
value-OPTIONS = OPCIONES
value-COMMAND = COMANDO
value-URL = URL
value-PATH = RUTA
value-N = N
value-LANG = IDIOMA
value-MODE = MODO
value-NAME = NOMBRE
value-ROOM = SALA
value-ADDR = DIRECCIÓN
value-MESSAGE = MENSAJE
value-BYTES = BYTES
value-MS = MS
value-SECS = SEG
value-TIME = MOMENTO
value-ID = ID
value-GROUP = GRUPO
value-DURATION = DURACIÓN
value-DIR = DIRECTORIO
value-SIZE = TAMAÑO
value-PORT = PUERTO
value-PASSWORD = CONTRASEÑA
value-WHEN = CUÁNDO
value-LIMIT = LÍMITE
value-SUBCOMMAND = COMANDO
value-RATE = RITMO
value-MIN--MAX = MÍN..MÁX

## --help: los comandos

cmd-charla-about = Chat y mensajería distribuidos a través de un broker (Redis, RabbitMQ, Kafka o el suyo propio)
cmd-charla-long-about = charla: programas en distintas computadoras se hablan solo a través de un broker de mensajes.
    Es el emisor.py / receptor.py del taller en un único binario rápido, sobre tu broker.
cmd-charla-after =
    Ejemplos (el taller, en dos computadoras que llegan a 192.168.0.10):
      charla listen                                  # consumidor, como receptor.py
      charla send                                    # productor, como emisor.py (pregunta tu nombre)
      charla send --name Juan "Hola María!"          # un mensaje
      seq 1000 | charla send --name bot              # un mensaje por línea de la entrada
      charla listen --json --count 10                # NDJSON, termina tras 10
      charla check --broker redis://192.168.0.10:6380
      charla chat --name Juan                        # el chat en la terminal: salas, historial
      charla web                                     # el chat del navegador en http://127.0.0.1:8080/
      charla web --archive postgres://postgres@127.0.0.1/charla   # historial y búsqueda en PostgreSQL

    Brokers (--broker o CHARLA_BROKER):
      redis://[:contraseña@]host[:puerto][/db]   Redis, Valkey o `charla serve` (rediss:// para TLS)
      amqp://usuario:clave@host[:puerto]/vhost   RabbitMQ
      kafka://host[:puerto]                      protocolo Kafka
      memory://[nombre]                          dentro del proceso (pruebas, demos de un solo proceso)
    Por defecto: redis://127.0.0.1:6380, el puerto del taller.
    Una contraseña en una URL (o en cualquier argumento) la ve cualquier usuario de la máquina con
    `ps`: ponla en CHARLA_PASSWORD o en un archivo indicado con --password-file, fuera de la URL.

    Modos de entrega (--mode):
      queue      cada mensaje a un solo consumidor, con acuse (por defecto; la lista chat_cola)
      broadcast  cada oyente conectado recibe cada mensaje; no se guarda nada
      stream     registro duradero: repetir con --from-beginning / --from ID, continuar con --group
                 (lo que comparten los miembros de un grupo depende del broker: charla listen --help)
      routing    escuchar por patrón: --room 'chat.*' o 'app.error.#'; enviar a un tema

    Idioma: --lang en|es, CHARLA_LANG, la clave lang del archivo de configuración, o LANG / LC_ALL.
    Archivo de configuración: --config RUTA, CHARLA_CONFIG, ./charla.toml o
    ~/.config/charla/config.toml, con las claves broker, name, room, mode, lang, group, prefetch.
cmd-check-about = Conectar, hacer ping y decir qué broker y versión responde (como broker.py de la semilla)
cmd-send-about = Enviar mensajes: interactivo como emisor.py, uno desde los argumentos o uno por línea de la entrada
cmd-listen-about = Recibir e imprimir mensajes como receptor.py (Ctrl+C imprime la cuenta)
cmd-bench-about = Medir el rendimiento de punta a punta y los percentiles de latencia en un broker y modo
cmd-serve-about = Ejecutar el broker incluido: el protocolo de Redis en 127.0.0.1:6380, sin instalar nada
cmd-serve-after = Qué es:
      Un broker dentro de charla que habla el protocolo de Redis (RESP2/RESP3). Cualquier cliente de
      Redis funciona con él sin cambios: broker.py / emisor.py / receptor.py del taller (esperan
      localhost:6380, aquí por defecto), redis-cli, redis-py, node-redis, y el backend redis:// de
      charla. Listas, conjuntos, conjuntos ordenados, pub/sub, streams con grupos de consumidores,
      transacciones, caducidad.

    Ejemplos:
      charla serve                                     # 127.0.0.1:6380, solo en memoria
      charla serve --bind 0.0.0.0 --requirepass-file pw.txt  # accesible desde la otra computadora
      charla serve --appendonly --dir ./data           # conservar los mensajes entre reinicios
      charla serve --appendonly --appendfsync always   # no se pierde nada confirmado, ni en un fallo
      redis-cli -p 6380 ping                           # hablarle con cualquier cliente de Redis

    Qué sirve (RESP2 y RESP3, respuestas como las da redis-server 7): cadenas y contadores
    (GET/SET con opciones, familia INCR, APPEND, GETRANGE/SETRANGE, GETEX, GETDEL, MGET/MSET),
    mapas de bits (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD[_RO]), claves y caducidad (DEL,
    EXISTS, TOUCH, TYPE, KEYS, SCAN, RENAME, COPY, MOVE, familia EXPIRE, TTL, PERSIST, RANDOMKEY,
    OBJECT), SORT[_RO], listas con extracciones bloqueantes (LPUSH…, LINSERT, LMOVE, BLPOP, BLMOVE,
    LMPOP…), hashes (HSET…, HSCAN, HINCRBYFLOAT, HRANDFIELD…), conjuntos (SADD…,
    SINTER/SUNION/SDIFF[STORE], SPOP, SSCAN…), conjuntos ordenados (ZADD, ZRANGE con
    BYSCORE/BYLEX/REV/LIMIT, ZRANGESTORE, ZRANK, ZPOPMIN, ZMPOP, BZPOPMIN, BZMPOP,
    ZUNION/ZINTER/ZDIFF[STORE], ZRANDMEMBER, ZSCAN…), streams y grupos de consumidores (XADD,
    XREAD[GROUP] con BLOCK, XACK, XPENDING, XCLAIM, XAUTOCLAIM, XGROUP, XINFO…), pub/sub,
    MULTI/EXEC/WATCH, notificaciones del espacio de claves (CONFIG SET notify-keyspace-events KEA), y
    CLIENT (incl. REPLY, UNBLOCK), CONFIG, INFO (con commandstats), COMMAND, SELECT (16 bases),
    FLUSHALL, FUNCTION FLUSH/LIST, SHUTDOWN. No se sirve: scripting (EVAL, FUNCTION LOAD), clúster,
    replicación, instantáneas RDB. Lo que no se sirve se rechaza con un error, nunca se responde OK
    para ignorarlo (docs/serve-differences.md enumera cada diferencia conocida con redis-server).

    Seguridad: escucha solo en 127.0.0.1 salvo que --bind diga otra cosa. Sin contraseña, los
    clientes de otras máquinas se rechazan con una explicación (modo protegido, como hace Redis);
    pon una contraseña o, en una red de confianza, --protected-mode no. Da la contraseña en un
    archivo (--requirepass-file, o CHARLA_REQUIREPASS_FILE) o en CHARLA_REQUIREPASS: --requirepass en
    la línea de comandos también vale, pero cualquier usuario de la máquina la ve con `ps`. Los
    clientes la dan luego con CHARLA_PASSWORD o --password-file (o redis://:CONTRASEÑA@HOST:6380,
    que también se ve con `ps`).

    Persistencia: apagada por defecto cuando lo arrancas tú, como el Redis del taller. Con
    --appendonly cada escritura se añade a DIR/charla.aof, se reproduce al arrancar y se compacta
    cuando crece. --appendfsync: always = una respuesta sale solo cuando la escritura está en disco;
    everysec = como mucho ~1 s perdido en un corte de luz; no = decide el sistema operativo.

    Arrancado por ti: cuando `charla send` o `charla listen` no encuentran nada en la dirección por
    defecto (y ni --broker, ni CHARLA_BROKER, ni el archivo de configuración nombran una;
    CHARLA_NO_AUTOSTART=1 lo apaga), arrancan este broker en segundo plano, duradero, así:
      charla serve --bind 127.0.0.1 --port 6380 --appendonly yes --appendfsync always
                   --dir $XDG_DATA_HOME/charla   (si no, ~/.local/share/charla)
    con su registro en charla-serve.log en ese directorio. CHARLA_SERVE_PORT lo mueve (y la
    dirección del broker por defecto) a otro puerto. Sigue en marcha hasta que lo pares: kill PID.

    Límites (los de Redis, con sus valores por defecto): un cliente sin la contraseña solo puede
    enviar peticiones pequeñas (10 argumentos de 16 KiB); --proto-max-bulk-len y
    --client-query-buffer-limit acotan lo que cualquiera puede enviar (se rechaza con un error antes
    de leerlo); un suscriptor que no lee lo que se le publica se desconecta
    (--client-output-buffer-limit); el keepalive de TCP encuentra a los clientes que desaparecieron.
    CONFIG SET los cambia en marcha.

    Un archivo dañado (cualquier cosa que no sean comandos completos, salvo un último comando cortado
    por un fallo, que se descarta) detiene el arranque con su posición en bytes; --aof-repair lo
    corta ahí.

    Para con Ctrl+C o SIGTERM: las conexiones se cierran y el archivo se vuelca a disco.
cmd-chat-about = Chatear en la terminal: salas, historial, quién está en línea (`charla chat --name Juan`)
cmd-chat-after = Mientras la pantalla del chat está abierta, las líneas de registro (avisos, reconexiones; más con -v) van a $XDG_STATE_HOME/charla/chat.log (~/.local/state/charla/chat.log), no a la terminal; /ayuda en el chat nombra el archivo.
cmd-archive-about = Guardar los mensajes de las salas en PostgreSQL, en un grupo de consumidores que se pone al día tras los cortes
cmd-web-about = Servir el chat del navegador: una página, un WebSocket y una API HTTP sobre las salas del broker
cmd-work-about = Ejecutar una orden por cada mensaje de una cola, con reintentos, límites de tiempo y mensajes muertos
cmd-work-after = Cómo funciona:
      Cada mensaje se toma de la cola de la sala y COMANDO se ejecuta para él, directamente (sin
      shell: escribe sh -c '…' si quieres uno), con el mensaje en JSON por la entrada estándar y en
      el entorno: CHARLA_ID, CHARLA_ROOM, CHARLA_USUARIO, CHARLA_MENSAJE, CHARLA_ATTEMPT (1, 2, …)
      y CHARLA_DELIVERIES (cuántas veces lo entregó antes el broker), y CHARLA_FILE (la ruta
      completa de una subida por `charla web --uploads`; vacía si no la hay).
      Un código de salida 0 confirma el mensaje. Un fallo (otro código, una señal, o pasar de
      --timeout, y entonces se mata todo su grupo de procesos) lo reintenta este mismo trabajador
      tras la espera de --backoff, sin soltar el mensaje; tras --max-deliveries intentos va a los
      mensajes muertos con el motivo y el final de su salida de errores.
      SIGTERM o Ctrl+C: no se toma nada nuevo, las órdenes en marcha tienen --grace para terminar
      y luego se matan; los mensajes sin terminar vuelven a la cola. Una segunda señal para en el acto.

    Ejemplos:
      charla work --room fotos -- ./redimensionar.sh           # de una en una
      charla work --room fotos --concurrency 4 --timeout 2m -- convertir-una
      charla work --room correos --json -- sh -c 'enviar-correo "$CHARLA_MENSAJE"'
      redis-cli LRANGE 'charla:{"{"}fotos{"}"}:dead' 0 -1         # qué murió, y por qué
cmd-help-about = Mostrar esta ayuda o la de los comandos indicados

## --help: los argumentos (arg-COMANDO-ID, o arg-ID para los globales y compartidos)

arg-help = Mostrar la ayuda
arg-version = Mostrar la versión
arg-help-subcommand = Mostrar la ayuda de este comando
arg-archive-archive = La base de datos PostgreSQL donde archivar (se crea si falta, se migra su esquema): postgres://USUARIO@HOST:PUERTO/BASE; mejor la contraseña en PGPASSWORD que en la URL
arg-archive-room = Una sala que archivar (repetir para más) [por defecto: todas las salas que guarda el broker, consultadas de nuevo cada 10 s]
arg-archive-mode = stream: leer en el grupo de consumidores de los archivadores, poniéndose al día tras cualquier corte; broadcast: guardar lo que se oye en vivo (no queda nada de lo que ponerse al día)
arg-archive-group = Grupo de consumidores de los archivadores (modo stream)
arg-bench-mode = Modo de entrega que medir
arg-bench-messages = Mensajes que enviar en total (con --rate y --duration: ritmo × duración)
arg-bench-rate = Lazo abierto: enviar tantos mensajes por segundo con un horario fijo, haga lo que haga el broker, y medir la latencia de cada mensaje desde cuando le tocaba salir (no desde cuando pudo salir: la espera en cola cuenta, como en wrk2). Sin esta opción, los productores envían tan rápido como el broker acepta (lazo cerrado: rendimiento, pero la latencia esconde la cola)
arg-bench-duration = Con --rate: durar este tiempo (`10s`, `1m`, `500ms`, o segundos) en lugar de --messages
arg-bench-size = Bytes de texto por mensaje (el campo `mensaje`)
arg-bench-producers = Productores simultáneos, cada uno con su propia conexión
arg-bench-consumers = Consumidores simultáneos, cada uno con su propia conexión
arg-bench-batch = Mensajes por llamada de publicación (1 = un viaje de ida y vuelta por mensaje, como el emisor de la semilla); con --rate, lo máximo que un productor atrasado envía de golpe para ponerse al día
arg-bench-prefetch = Mensajes sin acuse que retiene un consumidor (queue y stream); también el lote de recepción
arg-bench-window = Máximo de mensajes publicados y aún no entregados (0 = sin límite): contrapresión, para que los productores no quiten la CPU que necesitan los consumidores y un broker local (no con --rate: un lazo abierto nunca espera)
arg-bench-room = Sala que usar, se deja como está al terminar [por defecto: un nombre aleatorio nuevo, borrado al terminar salvo en Kafka, donde bench no borra temas e imprime lo que deja]
arg-bench-json = Imprimir un objeto JSON con los resultados
arg-chat-name = Tu nombre [por defecto: CHARLA_NAME, el nombre del archivo de configuración, luego tu usuario del sistema]
arg-chat-room = Sala en la que empezar (/sala SALA cambia) [por defecto: general]
arg-chat-mode = stream: las salas guardan su historial (se muestra al entrar); broadcast: solo en vivo
arg-chat-history = Mensajes que se muestran al entrar en una sala
arg-check-json = Imprimir el resultado como un objeto JSON
arg-listen-group = Grupo de consumidores (modo stream): el grupo sigue donde sus miembros dieron acuse. Redis y `charla serve`: los miembros se reparten los mensajes de la sala. Kafka: una sala es una partición en modo stream, así que un miembro lo recibe todo y los demás esperan, y toman el relevo si muere (el modo queue reparte una sala entre particiones). RabbitMQ: sin grupos de stream
arg-listen-from-beginning = Modo stream: empezar por el mensaje más antiguo que guarda el broker
arg-listen-from = Modo stream: empezar después de esta posición (como la imprime --json: un id de stream de Redis, una posición de RabbitMQ, un PARTICIÓN:POSICIÓN de Kafka)
arg-listen-since = Modo stream: empezar por el primer mensaje guardado en MOMENTO o después: una fecha y hora (2026-11-24T14:30:00Z), segundos unix (1764000000), o una antigüedad (90s, 10m, 2h, 1d)
arg-listen-json = Imprimir un objeto JSON por línea (NDJSON) en lugar de texto
arg-listen-count = Terminar tras recibir esta cantidad de mensajes (los eventos JSON de otras aplicaciones también cuentan)
arg-listen-prefetch = Mensajes sin acuse retenidos a la vez (queue y stream) [por defecto: 100]
arg-listen-keep-duplicates = Imprimir los mensajes entregados de nuevo con un id ya visto (normalmente se descartan)
arg-send-name = Tu nombre en los mensajes (el `usuario` de la semilla) [por defecto: se pregunta, o "Usuario"]
arg-send-interactive = Preguntar como emisor.py aunque la entrada no sea una terminal
arg-send-quiet = No imprimir una línea por mensaje enviado
arg-send-message = El mensaje que enviar (las palabras se unen con espacios). Sin él, se leen líneas de la entrada: de forma interactiva desde una terminal, un mensaje por línea desde una tubería. Las opciones son opciones estén donde estén; después de `--` todo es texto del mensaje (`-- --room`).
arg-serve-bind = Dirección en la que escuchar (0.0.0.0 = todas las interfaces)
arg-serve-port = Puerto en el que escuchar (6380 es el del taller)
arg-serve-requirepass = Contraseña que deben dar los clientes (AUTH, o redis://:CONTRASEÑA@host). En la línea de comandos se ve con `ps`: mejor CHARLA_REQUIREPASS o --requirepass-file
arg-serve-requirepass-file = Archivo cuyo contenido es la contraseña que deben dar los clientes (se ignora un salto de línea final)
arg-serve-protected-mode = Rechazar clientes de otras máquinas mientras no haya contraseña
arg-serve-dir = Directorio del archivo de solo añadir (AOF)
arg-serve-appendonly = Mantener un archivo de solo añadir y reproducirlo al arrancar (`--appendonly` o `--appendonly yes`)
arg-serve-appendfsync = Cuándo hacer fsync del archivo de solo añadir
arg-serve-maxclients = Máximo de clientes simultáneos
arg-serve-proto-max-bulk-len = Argumento más grande que puede enviar un cliente, p. ej. 512mb (proto-max-bulk-len de Redis)
arg-serve-client-query-buffer-limit = Máximo de bytes que puede ocupar la petición sin terminar de un cliente, p. ej. 1gb (client-query-buffer-limit)
arg-serve-client-output-buffer-limit = Desconectar a un suscriptor cuyos mensajes sin leer superen HARD, o sigan por encima de SOFT durante SECS
arg-serve-tcp-backlog = Cola de escucha (0 = el máximo del sistema, net.core.somaxconn)
arg-serve-tcp-keepalive = Segundos de silencio antes de que el keepalive de TCP sondee a un cliente (0 = apagado)
arg-serve-aof-repair = Antes de arrancar, recortar un archivo de solo añadir dañado hasta su último comando completo (como redis-check-aof --fix), imprimiendo lo recortado
arg-web-listen = Dirección donde servir la página, el WebSocket y la API (0.0.0.0:8080 para la red local)
arg-web-mode = stream: las salas guardan su historial (se muestra al entrar, sin huecos tras reiniciar el broker); broadcast: solo en vivo
arg-web-history = Mensajes que se muestran al entrar en una sala
arg-web-max-message-bytes = Mensaje más largo, en bytes de texto UTF-8
arg-web-rate = Mensajes por segundo que puede publicar una página (o la dirección de un cliente de la API), sostenidos
arg-web-burst = Mensajes que una página puede publicar de golpe por encima del ritmo
arg-web-archive = Guardar cada mensaje de las salas servidas en esta base PostgreSQL (se crea si falta) y servir desde ella las páginas anteriores y las búsquedas: postgres://USUARIO@HOST:PUERTO/BASE
arg-web-linger-ms = Milisegundos que se juntan los mensajes de una sala antes de salir hacia sus páginas de una vez: menos despertares y escrituras por página con carga, como mucho esta latencia de más (0 envía cada mensaje enseguida)
arg-web-page-backlog = Mensajes que una página puede quedarse atrás de su sala antes de desconectarla (con el motivo)
arg-web-max-connections-per-ip = Conexiones que puede tener a la vez una dirección de cliente, páginas y peticiones HTTP por igual (más allá: 429 y cerrada). La dirección local cuenta como cualquier otra: detrás de un proxy inverso en la misma máquina todos los clientes tienen la dirección del proxy, así que súbelo ahí, o 0 para no poner límite
arg-web-header-timeout = Segundos que tiene una conexión para enviar las cabeceras de una petición (tras conectar, o tras la respuesta anterior) antes de cerrarla
arg-web-idle-timeout = Segundos que una página puede pasar sin enviar nada antes de soltarla; se le hace ping al pasar un tercio (los navegadores responden solos)
arg-web-allowed-origin = Un sitio cuyas páginas pueden abrir el WebSocket y publicar (repetible): https://chat.example. Las páginas de la propia pasarela siempre pueden; las de otros sitios se rechazan (403), igual que las peticiones que un navegador marca Sec-Fetch-Site: cross-site. Las peticiones sin Origin (curl, programas) pasan. '*' permite todos los sitios
arg-web-allowed-host = Un nombre de host que servir (repetible), como el nombre público delante de un proxy inverso. Las peticiones que nombran otro host se rechazan (403, contra el DNS rebinding). Sin esta opción se sirve: con un --listen local, solo las direcciones locales y localhost; con cualquier otro, también cualquier dirección IP y el nombre de esta máquina. '*' sirve todos los nombres
arg-broker = URL del broker [por defecto: redis://127.0.0.1:6380]
arg-password-file = Archivo cuyo contenido es la contraseña del broker, que se une a la URL del broker: a diferencia de una contraseña en la URL o en los argumentos, `ps` no la muestra (CHARLA_PASSWORD también vale)
arg-partitions = Kafka: particiones de los temas que crea charla (un tema que ya existe conserva las suyas); lo mismo que ?partitions=N en la URL [por defecto: 3]
arg-config = Archivo de configuración (TOML) [por defecto: ./charla.toml, luego ~/.config/charla/config.toml]
arg-lang = Idioma de la salida: en o es [por defecto: según LANG]
arg-verbose = Más registro en stderr (-v info, -vv debug); RUST_LOG manda
arg-log-format = Líneas de registro como texto, o como un objeto JSON cada una (para un recolector de registros): hora, nivel, mensaje y campos
value-FORMAT = FORMATO
arg-mode = Modo de entrega: queue, broadcast, stream o routing [por defecto: queue]
arg-room = Sala: el nombre de la cola, canal, stream o tema en el broker (un patrón al escuchar en modo routing) [por defecto: chat_cola; chat_stream en modo stream; chat.general / chat.# en modo routing]

## charla serve

serve-cannot-listen = no se puede escuchar en { $address } (¿ya hay otro broker ahí? prueba --port)
serve-started = charla serve { $version } escuchando en { $address } (redis://{ $address }){ $password }{ $storage }
serve-password-required = , con contraseña
serve-append-only = , archivo de solo añadir en { $dir }
serve-memory-only = , solo en memoria

## charla web (las líneas de la pasarela)

web-open-files = { $count } archivos abiertos
web-open-files-error = no se puede leer o subir el límite de archivos abiertos: { $reason }
web-open-files-unknown = límite de archivos abiertos desconocido
web-cannot-listen = no se puede escuchar en { $address }
web-archive = , archivo { $url }
web-uploads = subidas guardadas en { $dir }; cada una es una tarea en la sala { $room } (charla work --room { $room } --notify -- …)
web-uploads-dir = no se puede usar { $dir } para las subidas
web-no-connection-limit = sin límite de conexiones por dirección
web-connection-limit = como mucho { $count } conexiones por dirección
web-started = 💬 charla web en http://{ $address }/ — broker { $broker } (modo { $mode }){ $archive }; { $limit }, { $files }; Ctrl+C para
web-names-unverified = ⚠ los nombres no se verifican (--auth none): cualquiera que llegue a { $address } puede elegir un nombre que no esté en línea; mira --auth password|jwt|proxy
web-stopped = charla web se detuvo

## Errores en el borde del binario: el tipo en palabras, el detalle de la biblioteca entre paréntesis

err-refused = no se puede llegar al broker en { $address }: la conexión fue rechazada ({ $detail })
err-timeout = no se puede llegar al broker en { $address }: no respondió a tiempo ({ $detail })
err-unknown-host = no se puede llegar al broker en { $address }: nombre de host desconocido ({ $detail })
err-unreachable = no se puede llegar al broker en { $address } ({ $detail })
err-auth = el broker en { $address } no aceptó la autenticación ({ $detail })
err-unavailable = el broker en { $address } no puede atender peticiones por ahora ({ $detail })
err-invalid-url = URL de broker no válida '{ $url }' ({ $detail })
hint-default-port = nada escucha en el puerto del taller (6380): arranca un broker con `charla serve` (o `redis-server --port 6380`), o indica otro con --broker
hint-unreachable = ¿está arrancado el broker y es correcta la dirección? (en otra computadora: IP de la LAN y cortafuegos)
hint-auth-amqp = pon el usuario en la URL (amqp://USUARIO@host:puerto/vhost) y la contraseña en CHARLA_PASSWORD o en un archivo (--password-file)
hint-auth = da la contraseña en CHARLA_PASSWORD o en un archivo (--password-file); en la URL (redis://:CONTRASEÑA@host:puerto) la ve cualquiera con `ps`

## La página web (page-…: se sirven tal cual a la página; su script rellena { $name })

page-menu = ☰ Salas
page-language = Idioma
page-rooms = Salas
page-new-room = nueva sala
page-room-rule = letras, dígitos, '.', '_' o '-'
page-enter = Entrar
page-online = En línea
page-search-title = Buscar en el archivo
page-words = palabras
page-search = Buscar
page-older = Mensajes anteriores
page-your-name = tu nombre
page-write = escribe un mensaje…
page-send = Enviar
page-ask-name = ¿Cómo te llamas?
page-token = Contraseña o token
page-verified = verificado
page-unverified = ⚠ Los nombres no están verificados: cualquiera en la red puede usar un nombre que no esté en línea.
page-joined = → { $name } entró
page-left = ← { $name } salió
page-connected = conectado
page-broker-away = reconectando con el broker…
page-disconnected = desconectado; reintentando…
page-bad-room = ⚠ sala no válida: usa letras, dígitos, '.', '_' o '-'
page-no-older = ⚠ no hay mensajes anteriores
page-no-results = sin resultados
page-name-length = ⚠ un nombre tiene de 1 a 32 caracteres
page-name-hidden = ⚠ el nombre lleva un carácter invisible o que cambia la dirección del texto ({ $code }): quítalo
page-refused = ⚠ la pasarela no dejó entrar: { $reason }
page-name-mark = ⚠ el nombre lleva la marca de un nombre verificado: quítala
page-name-marks = ⚠ como mucho 2 acentos o marcas sobre una letra de un nombre

## charla bench

bench-header = charla bench: { $backend } { $mode }, { $messages } mensajes de { $size } B, { $producers } productor(es), { $consumers } consumidor(es), lote { $batch }, prefetch { $prefetch }, ventana { $window }
bench-open-loop = {"  "}lazo abierto { $target } msj/s previstos, { $sent } msj/s enviados (latencia desde que a cada uno le tocaba salir)
bench-throughput = {"  "}rendimiento { $rate } msj/s   ({ $received } entregados en { $secs } s)
bench-latency = {"  "}latencia µs p50 { $p50 }   p90 { $p90 }   p99 { $p99 }   p99.9 { $p999 }   máx { $max }
bench-room-left = ℹ️  bench deja la sala que indicaste como está: { $room } (lo que bench le envió en modo stream se queda ahí)
bench-room-not-removed = ⚠️  no se pudo borrar la sala de bench { $room }: { $reason }
bench-kafka-left = ℹ️  bench no borra temas de Kafka (un borrado afecta a todo el clúster, y tansu 0.6 borra todos los temas cuando se le pide borrar uno); deja: { $topics }
    {"   "}para borrarlos en Apache Kafka (no en tansu):
bench-bad-duration = --duration "{ $text }": se esperaba un tiempo como 10s, 1m, 500ms o segundos

## Líneas de comandos que clap rechaza (en inglés, los mensajes del propio clap)

usage-unknown-argument = argumento inesperado '{ $arg }'
usage-unknown-command = comando desconocido '{ $command }'
usage-invalid-value = valor no válido '{ $value }' para '{ $arg }'
usage-missing = falta un argumento obligatorio: { $arg }
usage-conflict = '{ $arg }' no se puede usar con '{ $other }'
usage-wrong-values = cantidad de valores incorrecta para '{ $arg }'
usage-other = la línea de comandos no es válida
usage-more = Para más información, prueba '--help'.

## check, listen, send, archive y el resto del binario

check-timing = {"   "}conexión y ping en { $ms } ms; modos: { $modes }
check-ok = ✅ Broker funcionando correctamente
listen-missed = ⚠️  la retención del broker borró { $count } mensaje(s) de '{ $room }' antes de que este receptor los leyera
listen-stream-only = --group, --from-beginning, --from y --since solo valen con --mode stream (este es el modo { $mode })
send-line-not-sent = línea { $line }: { $reason }; no enviada
send-not-utf8 = la línea { $line } no es texto UTF-8; no enviada
send-too-long = línea { $line }: { $size } bytes superan el límite de { $limit } bytes de un mensaje; no enviada
chat-mode = --mode { $mode }: una sala de chat es un stream (con historial) o broadcast (solo en vivo)
archive-stopped = charla archive se detuvo
no-runtime = no se puede arrancar el entorno asíncrono: { $reason }
config-unreadable = no se puede leer el archivo de configuración { $file }
config-bad = archivo de configuración incorrecto { $file }
config-key = clave '{ $key }' del archivo de configuración
password-not-utf8 = CHARLA_PASSWORD no es texto UTF-8 válido
password-file-unreadable = no se puede leer el archivo de contraseña { $file }
password-file-empty = el archivo de contraseña { $file } está vacío

## Opciones rechazadas y pasos fallidos de los subcomandos (la razón del sistema o de la biblioteca sigue tras ": ")

web-max-message-bytes = --max-message-bytes: de 1 a { $max } bytes
web-rate = --rate debe ser mayor que 0 y --burst al menos 1
web-read-rate = --read-rate debe ser mayor que 0 y --read-burst al menos 1
web-timeouts = --header-timeout debe ser al menos 1 s y --idle-timeout al menos 3 s
web-auth-stray-file = --auth-password-file va con --auth password; --jwt-secret-file y --jwt-public-key-file, con --auth jwt
web-auth-password-file = --auth password necesita --auth-password-file ARCHIVO
web-auth-jwt-key = --auth jwt necesita --jwt-secret-file (HS256) o --jwt-public-key-file (RS256), uno de los dos
web-auth-proxy-trusted = --auth proxy necesita --trusted-proxy CIDR: la cabecera del usuario solo se cree si viene del proxy, o cualquiera podría enviarla
file-unreadable = no se puede leer { $path }
file-not-utf8 = { $path } no es texto UTF-8
serve-password-twice = la contraseña se da dos veces (--requirepass-file y --requirepass o CHARLA_REQUIREPASS): dala una sola vez
serve-repairing = al reparar { $path }
since-before-1970 = --since { $text }: anterior a 1970
since-bad = --since { $text }: se esperaba una fecha y hora (2026-11-24T14:30:00Z), segundos unix o una antigüedad como 90s, 10m, 2h, 1d
archive-unreachable = no se puede abrir el archivo { $url }: ¿está PostgreSQL en marcha allí, y la URL es postgres://USUARIO@HOST:PUERTO/BASE_DE_DATOS? ({ $detail })
archive-cannot-list = { $backend } no puede listar sus salas: nómbralas con --room
send-after = tras enviar { $count } mensajes
bench-rate = --rate debe ser al menos 1 mensaje por segundo
bench-subscribing = al suscribirse
bench-publishing = al publicar
bench-consuming = al consumir
bench-producer-task = tarea productora
bench-consumer-task = tarea consumidora
bench-merging = al juntar los histogramas
bench-consumers-late = los consumidores no terminaron en 10 minutos

## Los rechazos de las reglas del chat (check_room / check_name / check_text de charla-chat)

rule-room = una sala tiene de 1 a 64 letras, dígitos, '.', '_' o '-'
rule-name-length = un nombre tiene de 1 a { $max } caracteres
rule-name-control = el nombre lleva un carácter de control ({ $code }); quítalo
rule-name-bidi = el nombre lleva un carácter que cambia la dirección del texto ({ $code }): puede hacer que un nombre parezca otro; quítalo
rule-name-invisible = el nombre lleva un carácter invisible ({ $code }): hace que un nombre parezca otro; quítalo
rule-name-mark = el nombre lleva la marca de un nombre verificado; quítala
rule-name-marks = como mucho { $max } acentos o marcas sobre una letra de un nombre
rule-text-empty = el mensaje está vacío
rule-text-long = el mensaje tiene { $len } bytes; el límite es { $max }

## Lo que `charla web` dice a una página o a un cliente de la API (cuerpos de los rechazos,
## tramas `error`, motivos de cierre), en el idioma de la petición. El detalle técnico va
## entre paréntesis.

gw-bad-json = se esperaba {"{"}"mensaje": "…"{"}"} ({ $detail })
gw-bad-page = no se puede leer esa página del historial ({ $detail })
gw-archive-away = el archivo no puede responder ahora ({ $detail })
gw-body-late = el cuerpo de la petición no llegó en { $secs } s
gw-body-too-large = el cuerpo de la petición pasa de { $max } bytes (o llegó cortado)
gw-broker-away = el broker no está ({ $detail }); vuelve a intentarlo en un momento
gw-broker-refused = el broker lo rechazó ({ $detail })
gw-broker-slow = el broker no respondió a tiempo
gw-closing = la pasarela se está cerrando
gw-host = esta pasarela no sirve el host '{ $host }'; arráncala con --allowed-host para servirlo
gw-idle = nada de la página en { $secs } s, ni siquiera un pong
gw-join-failed = no se puede entrar en la sala: { $reason }
gw-max-rooms = esta pasarela ya sirve su máximo de salas ({ $max }); entra en una de ellas, o vuelve a intentarlo cuando se libere alguna
gw-name-held = «{ $name }» ya está conectado en la sala '{ $room }'; elige otro nombre
gw-names-full = demasiados nombres conectados; inténtalo más tarde
gw-no-upgrade = esta conexión no puede pasar a WebSocket (solo HTTP/1.1)
gw-not-an-id = before={ $id }: no es el id de un mensaje
gw-not-queued = no se pudo poner el mensaje en cola: { $reason }
gw-not-your-name = eres '{ $name }': no puedes publicar como '{ $asked }'
gw-origin = una página de { $origin } no puede usar esta pasarela; arráncala con --allowed-origin { $origin } para permitirlo
gw-origin-cross-site = una página de otro sitio ({ $origin }) no puede usar esta pasarela; arráncala con --allowed-origin para permitir uno
gw-page-limit = limit: de 1 a { $max } mensajes
gw-password-needed = esta pasarela pide una contraseña
gw-password-wrong = contraseña incorrecta
gw-password-wrong-room = contraseña incorrecta para la sala '{ $room }'
gw-proxy-only = esta pasarela toma sus usuarios de un proxy de confianza; conéctate a través de él
gw-proxy-silent = el proxy no dijo quién eres
gw-proxy-user = el usuario del proxy: { $reason }
gw-room-closed = la sala se cerró
gw-search-needs-archive = buscar necesita el archivo: arranca la pasarela con --archive postgres://…
gw-text-frames = envía tramas de texto
gw-token-algorithm = el token está firmado con otro algoritmo
gw-token-expired = el token ha caducado
gw-token-invalid = no es un token válido ({ $detail })
gw-token-needed = esta pasarela pide un token (JWT)
gw-token-no-key = la pasarela no tiene clave para comprobar tokens
gw-token-room = tu token no abre la sala '{ $room }'
gw-token-signature = la firma del token no es válida
gw-token-sub = el sub del token: { $reason }
gw-too-fast = demasiado rápido: como mucho { $rate } mensajes por segundo de un cliente; espera { $wait } s
gw-too-many-reads = demasiadas peticiones: como mucho { $rate } por segundo de un cliente
gw-too-slow = demasiado lento: la página se quedó { $count } mensajes atrás; recarga para ponerte al día
gw-unread-pongs = envió { $count } pings sin leer sus pongs
gw-websocket-key = falta Sec-WebSocket-Key o no es válida
gw-websocket-only = esta dirección solo acepta conexiones WebSocket
gw-websocket-version = solo la versión 13 de WebSocket
gw-uploads-off = esta pasarela no acepta subidas (arráncala con --uploads DIR)
gw-uploads-busy = ya están llegando { $count } subidas; inténtalo de nuevo en un momento
gw-upload-form = se esperaba un formulario (multipart/form-data) con un 'file' y tu 'usuario'
gw-upload-no-file = el formulario no trae 'file'
gw-upload-too-large = el archivo pasa de { $max } bytes (--max-upload-bytes)
gw-upload-not-picture = no es una imagen: solo JPEG, PNG, GIF o WebP
gw-upload-store = no se pudo guardar el archivo ({ $reason })
gw-upload-not-queued = no se pudo encolar la tarea ({ $reason }); no se guardó nada
upload-thumb-ready = 🖼️ miniatura lista: { $file }
upload-done = ✅ { $file }: hecho
upload-failed = ❌ { $file }: { $why } { $detail }
page-upload = 📎
page-upload-title = Enviar una imagen (o suéltala aquí)
page-upload-failed = ⚠ la imagen no se envió: { $reason }
page-uploading = enviando { $file }…
