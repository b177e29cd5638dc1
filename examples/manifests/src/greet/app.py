def handler(event, context):
    name = (event or {}).get("name", "world")
    return {"greeting": f"Hello, {name}!"}
