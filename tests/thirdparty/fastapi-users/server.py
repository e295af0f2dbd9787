"""Run the fastapi-users fixture server: python3 server.py DATA_DIR PORT

Puts py-deps/ (pip --target) on the path, creates a fresh SQLite database (aiosqlite) in
DATA_DIR, adds the fixture users and serves the standard fastapi-users routers with uvicorn on
127.0.0.1:PORT:

  POST /auth/jwt/login, /auth/jwt/logout      get_auth_router (Bearer transport, JWT strategy,
                                              requires_verification=True)
  POST /auth/register                         get_register_router
  POST /auth/forgot-password, /auth/reset-password   get_reset_password_router
  POST /auth/request-verify-token, /auth/verify       get_verify_router
  GET|PATCH /users/me, GET|PATCH|DELETE /users/{id}   get_users_router (superusers for {id})

Secrets come from the environment: FU_JWT_SECRET (access tokens, audience
"fastapi-users:auth"), FU_RESET_SECRET (reset-password tokens, "fastapi-users:reset"),
FU_VERIFY_SECRET (verification tokens, "fastapi-users:verify"). The tokens the user manager
would e-mail are written to DATA_DIR/mail/, one file each (`reset <email> <token>`,
`verify <email> <token>`). Passwords shorter than 8 characters are refused (validate_password).

Fixture users (password: FU_PASSWORD), fixed ids:
  11111111-1111-4111-8111-111111111111  alice@example.com  verified
  22222222-2222-4222-8222-222222222222  bob@example.com    verified
  33333333-3333-4333-8333-333333333333  root@example.com   verified, superuser
  44444444-4444-4444-8444-444444444444  dave@example.com   inactive
"""
import asyncio
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "py-deps"))

from fastapi import Depends, FastAPI  # noqa: E402
from fastapi_users import BaseUserManager, FastAPIUsers, InvalidPasswordException, UUIDIDMixin, schemas  # noqa: E402
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy  # noqa: E402
from fastapi_users.password import PasswordHelper  # noqa: E402
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase  # noqa: E402

DATA_DIR, PORT = sys.argv[1], int(sys.argv[2])
MAIL_DIR = os.path.join(DATA_DIR, "mail")
JWT_SECRET = os.environ["FU_JWT_SECRET"]
RESET_SECRET = os.environ["FU_RESET_SECRET"]
VERIFY_SECRET = os.environ["FU_VERIFY_SECRET"]
PASSWORD = os.environ["FU_PASSWORD"]

USERS = [
    ("11111111-1111-4111-8111-111111111111", "alice@example.com", True, True, False),
    ("22222222-2222-4222-8222-222222222222", "bob@example.com", True, True, False),
    ("33333333-3333-4333-8333-333333333333", "root@example.com", True, True, True),
    ("44444444-4444-4444-8444-444444444444", "dave@example.com", False, True, False),
]


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


engine = create_async_engine(f"sqlite+aiosqlite:///{os.path.join(DATA_DIR, 'users.db')}")
session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def get_async_session():
    async with session_maker() as session:
        yield session


async def get_user_db(session: AsyncSession = Depends(get_async_session)):
    yield SQLAlchemyUserDatabase(session, User)


_mail_seq = 0


def mail(kind, email, token):
    global _mail_seq
    _mail_seq += 1
    with open(os.path.join(MAIL_DIR, f"{_mail_seq:04d}-{kind}.txt"), "w") as f:
        f.write(f"{kind} {email} {token}\n")


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = RESET_SECRET
    verification_token_secret = VERIFY_SECRET

    async def validate_password(self, password, user):
        if len(password) < 8:
            raise InvalidPasswordException(reason="Password should be at least 8 characters")

    async def on_after_forgot_password(self, user, token, request=None):
        mail("reset", user.email, token)

    async def on_after_request_verify(self, user, token, request=None):
        mail("verify", user.email, token)


async def get_user_manager(user_db=Depends(get_user_db)):
    yield UserManager(user_db)


def get_jwt_strategy() -> JWTStrategy:
    return JWTStrategy(secret=JWT_SECRET, lifetime_seconds=3600)


auth_backend = AuthenticationBackend(
    name="jwt",
    transport=BearerTransport(tokenUrl="auth/jwt/login"),
    get_strategy=get_jwt_strategy,
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])

app = FastAPI()
app.include_router(
    fastapi_users.get_auth_router(auth_backend, requires_verification=True),
    prefix="/auth/jwt",
)
app.include_router(fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth")
app.include_router(fastapi_users.get_reset_password_router(), prefix="/auth")
app.include_router(fastapi_users.get_verify_router(UserRead), prefix="/auth")
app.include_router(fastapi_users.get_users_router(UserRead, UserUpdate), prefix="/users")


async def setup():
    os.makedirs(MAIL_DIR, exist_ok=True)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    helper = PasswordHelper()
    async with session_maker() as session:
        for uid, email, active, verified, superuser in USERS:
            session.add(
                User(
                    id=uuid.UUID(uid),
                    email=email,
                    hashed_password=helper.hash(PASSWORD),
                    is_active=active,
                    is_verified=verified,
                    is_superuser=superuser,
                )
            )
        await session.commit()


if __name__ == "__main__":
    import uvicorn

    asyncio.run(setup())
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="info", access_log=True)
