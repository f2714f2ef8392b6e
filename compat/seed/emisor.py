"""
Emisor de mensajes - PRODUCER
Este programa envía mensajes al broker Redis
"""
from broker import conectar_broker, enviar_mensaje

def main():
    print("📤 EMISOR DE MENSAJES")
    print("="*40)
    
    # Conectar al broker
    client = conectar_broker()
    if not client:
        print("❌ No se pudo conectar al broker")
        return
    
    # Pedir nombre del usuario
    nombre = input("¿Cuál es tu nombre? ").strip()
    if not nombre:
        nombre = "Usuario"
    
    print(f"¡Hola {nombre}! Escribe mensajes (o 'salir' para terminar)")
    print("-" * 40)
    
    # Loop para enviar mensajes
    while True:
        mensaje = input(f"{nombre}: ").strip()
        
        if mensaje.lower() == 'salir':
            print("👋 ¡Hasta luego!")
            break
            
        if mensaje:
            enviar_mensaje(client, nombre, mensaje)

if __name__ == "__main__":
    main()
