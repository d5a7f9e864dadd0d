// Interop tests for github.com/rabbitmq/amqp091-go (Debian's golang-github-rabbitmq-amqp091-go-dev,
// built in GOPATH mode: see interop/run.sh). Written against RabbitMQ 3.10.8; Lagomorph must
// pass them unchanged. AMQP_URL names the broker.
//
// Every wait is bounded (waitFor, or a select with a timer); nothing sleeps to synchronise.
package interop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// wait bounds any single wait on the broker.
const wait = 5 * time.Second

func url() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/%2F"
}

func unique(kind string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return fmt.Sprintf("interop-go-%s-%s", kind, hex.EncodeToString(b))
}

// open dials the broker and opens a channel; both close when the test ends.
func open(t *testing.T) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return conn, ch
}

// cleanup deletes queues and exchanges on a connection of its own when the test ends.
func cleanup(t *testing.T, queues []string, exchanges []string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(url())
		if err != nil {
			return
		}
		defer conn.Close()
		for _, q := range queues {
			if ch, err := conn.Channel(); err == nil {
				ch.QueueDelete(q, false, false, false)
				ch.Close()
			}
		}
		for _, x := range exchanges {
			if ch, err := conn.Channel(); err == nil {
				ch.ExchangeDelete(x, false, false)
				ch.Close()
			}
		}
	})
}

func declareQueue(t *testing.T, ch *amqp.Channel, durable bool) string {
	t.Helper()
	name := unique("q")
	if _, err := ch.QueueDeclare(name, durable, false, false, false, nil); err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	cleanup(t, []string{name}, nil)
	return name
}

func publish(t *testing.T, ch *amqp.Channel, exchange, key string, mandatory bool, msg amqp.Publishing) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ch.PublishWithContext(ctx, exchange, key, mandatory, false, msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func TestPublishConsume(t *testing.T) {
	_, ch := open(t)
	q := declareQueue(t, ch, false)
	const n = 20
	for i := 0; i < n; i++ {
		publish(t, ch, "", q, false, amqp.Publishing{
			ContentType:   "text/plain",
			CorrelationId: fmt.Sprintf("c%d", i),
			Headers:       amqp.Table{"n": int32(i), "s": "x"},
			Body:          []byte(fmt.Sprintf("m%d", i)),
		})
	}
	deliveries, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for i := 0; i < n; i++ {
		select {
		case d := <-deliveries:
			if got, want := string(d.Body), fmt.Sprintf("m%d", i); got != want {
				t.Fatalf("delivery %d: body %q, want %q", i, got, want)
			}
			if d.ContentType != "text/plain" || d.CorrelationId != fmt.Sprintf("c%d", i) {
				t.Fatalf("delivery %d: properties %q %q", i, d.ContentType, d.CorrelationId)
			}
			if d.Headers["n"] != int32(i) || d.Headers["s"] != "x" {
				t.Fatalf("delivery %d: headers %v", i, d.Headers)
			}
			if err := d.Ack(false); err != nil {
				t.Fatalf("ack: %v", err)
			}
		case <-timer.C:
			t.Fatalf("only %d of %d deliveries within %v", i, n, wait)
		}
	}
	st, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil || st.Messages != 0 {
		t.Fatalf("after acks: %+v %v", st, err)
	}
}

func TestConfirms(t *testing.T) {
	_, ch := open(t)
	q := declareQueue(t, ch, true)
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm.select: %v", err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	const n = 50
	for i := 0; i < n; i++ {
		publish(t, ch, "", q, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("p")})
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for i := uint64(1); i <= n; i++ {
		select {
		case c := <-confirms:
			if !c.Ack || c.DeliveryTag != i {
				t.Fatalf("confirm %d: %+v", i, c)
			}
		case <-timer.C:
			t.Fatalf("only %d of %d confirms within %v", i-1, n, wait)
		}
	}
	// Not PublishWithDeferredConfirm: in amqp091-go 1.5.0 it registers the confirmation after
	// sending the publish, so an ack that arrives first is lost and Wait never returns (a
	// client race that a fast broker hits).
}

func TestReturns(t *testing.T) {
	_, ch := open(t)
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	key := unique("unroutable")
	publish(t, ch, "amq.direct", key, true, amqp.Publishing{MessageId: "m1", Body: []byte("r")})
	select {
	case r := <-returns:
		if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" || r.Exchange != "amq.direct" ||
			r.RoutingKey != key || r.MessageId != "m1" || string(r.Body) != "r" {
			t.Fatalf("return: %+v", r)
		}
	case <-time.After(wait):
		t.Fatalf("no basic.return within %v", wait)
	}
	// Not mandatory: dropped silently, and the channel stays usable.
	publish(t, ch, "amq.direct", key, false, amqp.Publishing{Body: []byte("x")})
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatalf("channel unusable after returns: %v", err)
	}
}

// A client's cleanup unbinds after the queue (or exchange) is gone: RabbitMQ answers
// unbind-ok, and the channel stays open.
func TestUnbindCleanup(t *testing.T) {
	_, ch := open(t)
	x := unique("x")
	if err := ch.ExchangeDeclare(x, "direct", false, false, false, false, nil); err != nil {
		t.Fatalf("exchange.declare: %v", err)
	}
	cleanup(t, nil, []string{x})
	q := declareQueue(t, ch, false)
	if err := ch.QueueBind(q, "k", x, false, nil); err != nil {
		t.Fatalf("queue.bind: %v", err)
	}
	if _, err := ch.QueueDelete(q, false, false, false); err != nil {
		t.Fatalf("queue.delete: %v", err)
	}
	if err := ch.QueueUnbind(q, "k", x, nil); err != nil {
		t.Fatalf("queue.unbind after the queue is gone: %v", err)
	}
	if err := ch.QueueUnbind(unique("q"), "k", unique("x"), nil); err != nil {
		t.Fatalf("queue.unbind of nothing: %v", err)
	}
	if err := ch.ExchangeUnbind(unique("x"), "k", x, false, nil); err != nil {
		t.Fatalf("exchange.unbind of a missing destination: %v", err)
	}
	if err := ch.ExchangeUnbind(x, "k", unique("x"), false, nil); err != nil {
		t.Fatalf("exchange.unbind of a missing source: %v", err)
	}
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatalf("channel closed by the unbinds: %v", err)
	}
}

// Closing the connection while another goroutine publishes: Close answers cleanly (no reset,
// no broken pipe), and the publisher sees ErrClosed.
func TestCloseWhilePublishing(t *testing.T) {
	for round := 0; round < 10; round++ {
		conn, err := amqp.Dial(url())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		ch, err := conn.Channel()
		if err != nil {
			t.Fatalf("channel: %v", err)
		}
		q := declareQueue(t, ch, false)
		started := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			body := make([]byte, 4096)
			for i := 0; ; i++ {
				if i == 100 {
					close(started)
				}
				if err := ch.Publish("", q, false, false, amqp.Publishing{Body: body}); err != nil {
					done <- err
					return
				}
			}
		}()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("round %d: publishing failed before the close: %v", round, err)
		case <-time.After(wait):
			t.Fatalf("round %d: 100 publishes took over %v", round, wait)
		}
		if err := conn.Close(); err != nil {
			t.Fatalf("round %d: close while publishing: %v", round, err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, amqp.ErrClosed) {
				t.Fatalf("round %d: publisher ended with %v, want ErrClosed", round, err)
			}
		case <-time.After(wait):
			t.Fatalf("round %d: publisher still running after the close", round)
		}
	}
}
