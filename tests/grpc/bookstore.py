#!/usr/bin/python3
"""A gRPC bookstore for edge's transcoding tests (no generated code).

Service shop.v1.Bookstore of bookstore.proto, its messages made from the
descriptor set protoc built of it (--descriptor-set):
  GetBook     Book{id, title "book ID on SHELF", tags ["a", "b"] if
              include_tags}; id 404 aborts NOT_FOUND "no book 404", id 503
              UNAVAILABLE "shelf offline".
  CreateBook  the request's book with id 1000 and author SHELF.
  ListBooks   page_size books (ids 1.., titles "bI", the request's tags)
              and the shelf.
  Echo        the request.
Every answer carries x-backend: bookstore in its trailers.

Prints the port it listens on (127.0.0.1) as its first stdout line;
exits on SIGTERM.
"""

import argparse

import grpc
from serve import serve
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "shop.v1.Bookstore"
TRAILERS = (("x-backend", "bookstore"),)


def load(path):
    """The descriptor pool of the descriptor set at path."""
    files = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        files.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    # --include_imports lists every file after its imports.
    for file in files.file:
        pool.Add(file)
    return pool


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--descriptor-set", required=True)
    args = p.parse_args()
    pool = load(args.descriptor_set)
    factory = message_factory.MessageFactory(pool)
    service = pool.FindServiceByName(SERVICE)

    def cls(name):
        return factory.GetPrototype(pool.FindMessageTypeByName(f"shop.v1.{name}"))

    Book, ListBooksResponse = cls("Book"), cls("ListBooksResponse")

    def get_book(request, context):
        context.set_trailing_metadata(TRAILERS)
        if request.id == 404:
            context.abort(grpc.StatusCode.NOT_FOUND, "no book 404")
        if request.id == 503:
            context.abort(grpc.StatusCode.UNAVAILABLE, "shelf offline")
        book = Book(id=request.id, title=f"book {request.id} on {request.shelf}")
        if request.include_tags:
            book.tags.extend(["a", "b"])
        return book

    def create_book(request, context):
        context.set_trailing_metadata(TRAILERS)
        book = Book()
        book.CopyFrom(request.book)
        book.id, book.author = 1000, request.shelf
        return book

    def list_books(request, context):
        context.set_trailing_metadata(TRAILERS)
        reply = ListBooksResponse(shelf=request.shelf)
        for i in range(1, request.page_size + 1):
            reply.books.add(id=i, title=f"b{i}", tags=request.tags)
        return reply

    def echo(request, context):
        context.set_trailing_metadata(TRAILERS)
        return request

    behaviour = {
        "GetBook": get_book,
        "CreateBook": create_book,
        "ListBooks": list_books,
        "Echo": echo,
    }
    handlers = {}
    for method in service.methods:
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            behaviour[method.name],
            request_deserializer=factory.GetPrototype(method.input_type).FromString,
            response_serializer=factory.GetPrototype(
                method.output_type
            ).SerializeToString,
        )
    serve((grpc.method_handlers_generic_handler(SERVICE, handlers),), 8)


if __name__ == "__main__":
    main()
