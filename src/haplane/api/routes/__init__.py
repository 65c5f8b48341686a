"""One module per group of routes; each exposes ``router(deps) -> APIRouter``. Routes stay thin:
parse (with the model's validators), call the registry, answer."""
