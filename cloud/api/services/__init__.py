"""The cloud API's domain logic. Services raise cloud.api.errors exceptions and know nothing about HTTP."""
