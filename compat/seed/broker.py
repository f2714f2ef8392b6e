"""
Configuración del Broker Redis - El middleware de nuestro sistema
"""
import redis
import json
import time

# Configuración del broker Redis
REDIS_HOST = 'localhost'  # Cambiar por IP del servidor si es remoto
REDIS_PORT = 6380         # Puerto donde corre Redis
CHAT_QUEUE = 'chat_cola'  # Nombre de nuestra cola de mensajes

def conectar_broker():
    """Conecta al broker Redis"""
    try:
        client = redis.Redis(
            host=REDIS_HOST,
            port=REDIS_PORT,
            decode_responses=True
        )
        client.ping()  # Probar conexión
        print("✅ Conectado al broker Redis")
        return client
    except Exception as e:
        print(f"❌ Error conectando al broker: {e}")
        return None

def enviar_mensaje(client, usuario, mensaje):
    """Envía un mensaje al broker"""
    mensaje_completo = {
        'usuario': usuario,
        'mensaje': mensaje,
        'hora': time.strftime("%H:%M:%S")
    }
    mensaje_json = json.dumps(mensaje_completo, ensure_ascii=False)
    client.lpush(CHAT_QUEUE, mensaje_json)
    print(f"📤 Enviado: [{usuario}] {mensaje}")

def recibir_mensaje(client):
    """Recibe un mensaje del broker"""
    try:
        resultado = client.brpop(CHAT_QUEUE, timeout=1)
        if resultado:
            _, mensaje_json = resultado
            mensaje = json.loads(mensaje_json)
            print(f"📥 Recibido: [{mensaje['usuario']}] {mensaje['mensaje']} ({mensaje['hora']})")
            return mensaje
        return None
    except Exception as e:
        print(f"❌ Error recibiendo: {e}")
        return None

# Función de prueba
if __name__ == "__main__":
    print("🧪 Probando conexión al broker...")
    client = conectar_broker()
    if client:
        print("✅ Broker funcionando correctamente")
    else:
        print("❌ Problema con el broker")
