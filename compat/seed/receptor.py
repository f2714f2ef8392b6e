"""
Receptor de mensajes - CONSUMER
Este programa escucha mensajes del broker Redis
"""
from broker import conectar_broker, recibir_mensaje
import time

def main():
    print("📥 RECEPTOR DE MENSAJES")
    print("="*40)
    
    # Conectar al broker
    client = conectar_broker()
    if not client:
        print("❌ No se pudo conectar al broker")
        return
    
    print("🔄 Escuchando mensajes...")
    print("Presiona Ctrl+C para salir")
    print("-" * 40)
    
    mensajes_recibidos = 0
    
    # Loop para recibir mensajes
    while True:
        try:
            mensaje = recibir_mensaje(client)
            if mensaje:
                mensajes_recibidos += 1
            else:
                print(".", end="", flush=True)  # Indicar que está escuchando
                time.sleep(0.5)
                
        except KeyboardInterrupt:
            print(f"\n👋 Saliendo... Mensajes recibidos: {mensajes_recibidos}")
            break
        except Exception as e:
            print(f"\n❌ Error: {e}")

if __name__ == "__main__":
    main()
